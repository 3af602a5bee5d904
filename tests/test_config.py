"""CodecConfig (model/config.py): JSON round trip, hash, validation, replace(), derived sizes."""

import dataclasses
import json

import pytest

from model.config import HOST_SECTIONS, PRESETS, CodecConfig, ConfigError, preset

SECTIONS = ("signal", "lpc", "gain", "network", "fixed", "entropy", "postfilter", "input", "pitch")


def _all_fields(cfg):
    for sec in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, sec)):
            yield sec, f.name, getattr(getattr(cfg, sec), f.name)


def _changed(sec, name, value):
    """A different value of the same type for a field (kept valid where easy)."""
    if isinstance(value, bool):
        return not value
    if (sec, name) == ("pitch", "gain_bits"):     # every gain must stay below 1
        return value - 1
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value > 0 else value - 1.0
    if isinstance(value, str):
        return {"mdct": "stft", "stft": "mdct", "signal": "residual", "residual": "signal"}[value]
    if isinstance(value, tuple):
        return (value[0] * 2,) + value[1:]
    raise AssertionError(f"no rule for {sec}.{name}={value!r}")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name, tmp_path):
    cfg = preset(name)
    back = CodecConfig.from_dict(json.loads(cfg.to_json()))
    assert back == cfg
    assert back.config_hash == cfg.config_hash
    assert isinstance(back.network.code_bits, tuple)
    p = tmp_path / "c.json"
    p.write_text(cfg.to_json())
    assert CodecConfig.load(p) == cfg
    assert CodecConfig.load(name) == cfg          # a bare preset name loads the preset


def test_hash_stable_and_format():
    a, b = preset("default"), CodecConfig()
    assert a.config_hash == b.config_hash == CodecConfig.from_dict(a.to_dict()).config_hash
    assert len(a.config_hash) == 16 and int(a.config_hash, 16) >= 0
    assert preset("tiny").config_hash != a.config_hash


def test_hash_changes_with_every_field():
    cfg = preset("default")
    seen = {cfg.config_hash}
    n = 0
    for sec, name, value in _all_fields(cfg):
        new = _changed(sec, name, value)
        d = cfg.to_dict()
        d[sec][name] = new
        if (sec, name) == ("network", "stages"):
            d["network"]["code_bits"] = list(cfg.network.code_bits) + [cfg.network.code_bits[0]]
        if (sec, name) == ("entropy", "symbol_bits"):
            d["entropy"]["symbol_bits"] = 4
        if (sec, name) == ("fixed", "act_bits"):   # a bias of +-1 must still fit
            d["fixed"]["bias_bits"] = max(cfg.fixed.bias_bits, new - cfg.fixed.act_int_bits + 2)
        other = CodecConfig.from_dict(d)
        if sec in HOST_SECTIONS:   # host side only: changes no bit of a stream
            assert other.config_hash == cfg.config_hash, f"hash includes {sec}.{name}"
        else:
            assert other.config_hash not in seen, f"hash ignores {sec}.{name}"
            seen.add(other.config_hash)
        n += 1
    assert n == 42   # every field of every section


def test_hash_of_existing_configs_unchanged_by_subbands():
    """``network.subbands`` came after models and bitstreams were made: at its default (1) it is
    not in ``to_dict``, so the JSON and the hash of every config stay what they were (values
    computed before the field existed); any other value is in both."""
    old = {n: preset(n).replace(pitch={"enabled": False}) for n in PRESETS}
    old["default"] = old["default"].replace(network={"code_bits": (64,) * 9})   # before the 48-bit last stage
    assert {n: c.config_hash for n, c in old.items()} == {
        "default": "6d7e566b274b049f", "tiny": "8335138c927fa4d4",
        "large": "b2c0492aac2707ef"}   # large: 4-bit LSFs since the learned-scale retraining, hidden 128 since the tuned postfilter
    # the pitch pre-filter (on in every preset) is in the hash; the input high-pass is not
    assert all(preset(n).config_hash != c.config_hash for n, c in old.items())
    assert preset("default").replace(input={"highpass_hz": 0.0}).config_hash == preset("default").config_hash
    assert "subbands" not in preset("default").to_dict()["network"]
    two = preset("tiny").replace(network={"subbands": 2})
    assert two.to_dict()["network"]["subbands"] == 2
    assert two.config_hash != preset("tiny").config_hash
    assert CodecConfig.from_dict(json.loads(two.to_json())) == two
    assert two.replace(network={"subbands": 1}) == preset("tiny")


def test_replace():
    cfg = preset("tiny")
    r = cfg.replace(fixed={"act_bits": 12, "bias_bits": 10}, lpc={"gamma": 0.9})
    assert r.fixed.act_bits == 12 and r.lpc.gamma == 0.9
    assert r.fixed.act_int_bits == cfg.fixed.act_int_bits and r.network == cfg.network
    assert r.signal == cfg.signal and r.entropy == cfg.entropy and r.gain == cfg.gain
    assert cfg.fixed.act_bits == 10                    # the original is untouched
    assert r.config_hash != cfg.config_hash
    assert cfg.replace() == cfg
    assert cfg.replace(fixed={"act_bits": 10}).config_hash == cfg.config_hash
    with pytest.raises(ConfigError):
        cfg.replace(fixed={"act_bits": 3})             # validated
    with pytest.raises(ConfigError):
        cfg.replace(fixed={"no_such_field": 1})


def test_frozen():
    cfg = preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.fixed.act_bits = 8


BAD = [
    ("signal", {"sample_rate": 0}),
    ("signal", {"hop": -1}),
    ("signal", {"transform": "dct"}),
    ("network", {"stages": 0, "code_bits": []}),
    ("network", {"stages": 3}),                       # code_bits lists 2 stages
    ("network", {"code_bits": [16, 0]}),
    ("network", {"hidden": 0}),
    ("network", {"res_layers": -1}),
    ("network", {"code_bits": [16, 12]}),              # not a multiple of symbol_bits
    ("network", {"subbands": 0}),
    ("network", {"subbands": 3}),                      # does not divide the 64 coefficients
    ("network", {"subbands": 32}),                     # divides 64 coefficients, not 16 code bits
    ("fixed", {"act_int_bits": 1}),
    ("fixed", {"act_int_bits": 12}),                   # == act_bits
    ("fixed", {"scale_bits": 1}),
    ("fixed", {"scale_bits": 33}),
    ("fixed", {"bias_bits": 7}),                       # < act_frac + 2
    ("fixed", {"bias_bits": 33}),
    ("lpc", {"order": 0}),
    ("lpc", {"order": 33}),
    ("lpc", {"gamma": 0.0}),
    ("lpc", {"gamma": 1.5}),
    ("lpc", {"lsf_bits": 0}),
    ("lpc", {"lsf_bits": 9}),
    ("lpc", {"window": 32}),                           # < hop
    ("gain", {"bits": 0}),
    ("gain", {"bits": 9}),
    ("gain", {"step_db": 0.0}),
    ("entropy", {"symbol_bits": 0}),
    ("entropy", {"symbol_bits": 17}),
    ("entropy", {"max_code_len": 4}),
    ("entropy", {"packet_frames": 0}),
]


@pytest.mark.parametrize("sec,change", BAD, ids=[f"{s}-{'-'.join(c)}" for s, c in BAD])
def test_validation_errors(sec, change):
    cfg = preset("tiny")
    with pytest.raises(ConfigError) as ei:
        cfg.replace(**{sec: change})
    msg = str(ei.value)
    assert msg and "\n" not in msg
    if "subbands" in change:
        assert "subbands" in msg


def test_lpc_disabled_skips_lpc_checks():
    cfg = preset("tiny").replace(lpc={"enabled": False, "order": 0})
    assert cfg.lpc.bits_per_frame == 0
    assert cfg.raw_bits_per_frame() == cfg.gain.bits + sum(cfg.pitch.side_widths) + sum(cfg.network.code_bits)


def test_from_dict_and_load_errors(tmp_path):
    d = preset("tiny").to_dict()
    with pytest.raises(ConfigError, match="unknown config section"):
        CodecConfig.from_dict({**d, "bogus": {}})
    with pytest.raises(ConfigError, match="unknown field"):
        CodecConfig.from_dict({**d, "fixed": {**d["fixed"], "bogus": 1}})
    # missing sections and fields take their defaults
    # sections a dict leaves out take their defaults, except the newer front-end sections, which a
    # config written before they existed did not have (input high-pass and pitch pre-filter off)
    assert CodecConfig.from_dict({}) == CodecConfig().replace(input={"highpass_hz": 0.0},
                                                              pitch={"enabled": False})
    with pytest.raises(ConfigError, match="not found"):
        CodecConfig.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        CodecConfig.load(bad)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("transform", ["mdct", "stft"])
@pytest.mark.parametrize("subbands", [1, 2])
def test_layer_shapes_and_macs(name, transform, subbands):
    cfg = preset(name).replace(signal={"transform": transform}, network={"subbands": subbands})
    n = cfg.network
    D = cfg.coefficients
    assert D == (cfg.signal.hop if transform == "mdct" else 2 * cfg.signal.hop)
    D //= subbands                        # the shared network sees one sub-band
    enc_total = dec_total = 0
    for s in range(n.stages):
        sh = cfg.layer_shapes(s)
        enc, dec = sh["encoder"], sh["decoder"]
        assert [k for k, _, _ in enc] == ["in"] + ["res"] * n.res_layers + ["code"]
        assert [k for k, _, _ in dec] == ["in"] + ["res"] * n.res_layers + ["out"]
        b = n.code_bits[s] // subbands
        # layers chain: each fan_in is the previous fan_out
        for side, first_in, last_out in ((enc, D, b), (dec, b, D)):
            assert side[0][1] == first_in and side[-1][2] == last_out
            for (_, _, o), (_, i, _) in zip(side, side[1:]):
                assert o == i
        e = sum(i * o for _, i, o in enc)
        d = sum(i * o for _, i, o in dec)
        assert e == D * n.hidden + n.res_layers * n.hidden ** 2 + n.hidden * b
        assert d == b * n.hidden + n.res_layers * n.hidden ** 2 + n.hidden * D
        enc_total += e + (d if s < n.stages - 1 else 0)
        dec_total += d
    # the shared network runs once per sub-band
    assert cfg.binary_macs_per_frame("encoder") == subbands * enc_total
    assert cfg.binary_macs_per_frame("decoder") == subbands * dec_total


def test_derived_quantities():
    cfg = preset("tiny")
    assert cfg.code_bits_total == 32
    assert cfg.pitch.side_widths == (9, 3)       # lags 32..320: 289 values
    assert cfg.raw_bits_per_frame(1) == 8 * 3 + 6 + 12 + 16
    assert cfg.raw_bits_per_frame() == 8 * 3 + 6 + 12 + 32
    assert cfg.replace(pitch={"enabled": False}).raw_bits_per_frame() == 8 * 3 + 6 + 32
    assert cfg.raw_kbps() == pytest.approx(cfg.raw_bits_per_frame() * 16000 / 64 / 1000)
    f = cfg.fixed
    assert f.act_frac == 6
    assert f.acc_bits(1) == 11 and f.acc_bits(63) == 16 and f.acc_bits(64) == 17 and f.acc_bits(65) == 17
    assert f.product_bits(64) == 17 + f.scale_bits


def test_replace_unknown_section_is_config_error():
    with pytest.raises(ConfigError):
        preset("tiny").replace(fixd={"act_bits": 10})


@pytest.mark.parametrize("network", [{"hidden": 1 << 20}, {"stages": 65, "code_bits": [8] * 65},
                                     {"code_bits": [1 << 20] * 9}, {"hidden": "wide"},
                                     {"hidden": 4096, "stages": 64, "code_bits": [64] * 64},
                                     {"res_layers": 10 ** 9}, {"code_bits": ["x"] * 9}])
def test_limits_refuse_sizes_before_anything_is_allocated(network):
    """config.LIMITS and MAX_PARAMETERS: a model file's config sizes what the loader allocates."""
    from model.config import CodecConfig, ConfigError
    with pytest.raises(ConfigError):
        CodecConfig.from_dict({"network": network})


def test_presets_within_limits():
    from model.config import MAX_PARAMETERS, PRESETS, CodecConfig, preset
    for name in PRESETS:
        assert 0 < preset(name).parameter_count() <= MAX_PARAMETERS
    from model.net import Cascade
    cfg = CodecConfig()
    assert cfg.parameter_count() == sum(p.numel() for p in Cascade(cfg).parameters())


def test_code_offsets_are_the_one_code_layout():
    """``NetworkConfig.code_offsets`` is the one definition of where each stage's code bits lie
    in a frame's code: the total, the raw bits per frame, the cores' schedule and the board
    protocol's payload sizes read it."""
    from hw import protocol
    from hw.schedule import Schedule
    from model.config import CodecConfig, NetworkConfig
    from model.golden import random_model
    net = NetworkConfig(stages=3, code_bits=(16, 8, 24), hidden=32)
    assert net.code_offsets == (0, 16, 24, 48)
    cfg = CodecConfig(network=net)
    assert cfg.code_bits_total == 48
    assert cfg.raw_bits_per_frame(2) - cfg.raw_bits_per_frame(1) == 8
    assert [protocol.code_bytes(cfg, k) for k in (1, 2, 3)] == [2, 3, 6]
    sched = Schedule(random_model(cfg, seed=0), 4, "decoder")
    assert sched.code_offsets == [0, 16, 24] and sched.code_total == 48
