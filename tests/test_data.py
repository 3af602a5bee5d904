"""model.data: WAV I/O errors and round trips, pocketsphinx split, espeak-ng synthesis."""

import shutil

import numpy as np
import pytest
import soundfile as sf

from model.data import (AudioError, POCKETSPHINX_DIR, POCKETSPHINX_TEST, check_raw_pcm,
                        list_wavs, load_wav, make_sentences, prepare_pocketsphinx, prepare_asterisk,
                        voice_of, ASTERISK_DIR, MIN_PROMPT_SECONDS,
                        synthesize_speech, write_wav)


def _tone(n=16000, sr=16000, f=440.0):
    return 0.5 * np.sin(2 * np.pi * f * np.arange(n) / sr)


def test_write_load_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    x = np.round(rng.uniform(-1, 1, 4000) * 32768).clip(-32768, 32767) / 32768
    p = write_wav(tmp_path / "a" / "b.wav", x, 16000)
    info = sf.info(str(p))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    np.testing.assert_array_equal(load_wav(p), x)
    assert not [q for q in p.parent.iterdir() if q.name.endswith(".tmp")]


def test_write_clips_and_rejects_nan(tmp_path):
    y = load_wav(write_wav(tmp_path / "c.wav", np.array([2.0, -3.0, 1.0, 0.0]), 16000))
    np.testing.assert_array_equal(y, [32767 / 32768, -1.0, 32767 / 32768, 0.0])
    with pytest.raises(AudioError):
        write_wav(tmp_path / "n.wav", np.array([0.0, np.nan]), 16000)
    assert not (tmp_path / "n.wav").exists()


def _one_line(exc):
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def test_load_errors(tmp_path):
    with pytest.raises(AudioError) as e:
        load_wav(tmp_path / "missing.wav")
    assert "no such file" in _one_line(e)

    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not a RIFF file at all" * 10)
    with pytest.raises(AudioError) as e:
        load_wav(garbage)
    assert "not a readable audio file" in _one_line(e)

    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError) as e:
        load_wav(empty)
    assert "empty" in _one_line(e)

    stereo = tmp_path / "stereo.wav"
    sf.write(str(stereo), np.stack([_tone(), 0 * _tone()], axis=1), 16000, subtype="PCM_16")
    with pytest.raises(AudioError) as e:
        load_wav(stereo)
    assert "2 channels" in _one_line(e)
    mono = load_wav(stereo, resample=True)
    assert mono.shape == (16000,) and abs(np.max(mono) - 0.25) < 1e-3

    rate = tmp_path / "r44.wav"
    sf.write(str(rate), _tone(44100, 44100), 44100, subtype="PCM_16")
    with pytest.raises(AudioError) as e:
        load_wav(rate)
    assert "44100" in _one_line(e)
    y = load_wav(rate, 16000, resample=True)
    assert len(y) == 16000
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.argmax(spec) - 440) <= 1  # 1 Hz bins: the tone survives resampling

    with pytest.raises(AudioError):
        load_wav(tmp_path)  # a directory


def test_list_wavs(tmp_path):
    for rel in ["b/2.wav", "a.WAV", "b/c/1.wav", "x.txt", ".hidden.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_wavs(tmp_path)] == \
        ["a.WAV", "b/2.wav", "b/c/1.wav"]
    assert list_wavs(tmp_path / "nope") == []


def test_raw_check_tells_byte_order():
    data = (POCKETSPHINX_DIR / "goforward.raw").read_bytes() if POCKETSPHINX_DIR.exists() else None
    if data is None:
        pytest.skip("pocketsphinx-testdata not installed")
    assert check_raw_pcm(data)["ok"]
    swapped = np.frombuffer(data, "<i2").byteswap().tobytes()
    assert not check_raw_pcm(swapped)["ok"]


@pytest.mark.skipif(not POCKETSPHINX_DIR.exists(), reason="pocketsphinx-testdata not installed")
def test_prepare_pocketsphinx(tmp_path):
    r = prepare_pocketsphinx(tmp_path)
    assert len(r["test"]) == len(POCKETSPHINX_TEST) == 11
    assert len(r["train"]) == 3
    names = {p.name for p in r["test"]}
    assert {"cards_004.wav", "cards_005.wav", "raw_goforward.wav"} <= names
    assert not names & {p.name for p in r["train"]}
    assert list_wavs(tmp_path / "test") == r["test"]
    # each identifiable voice on one side only: every librivox and every cards clip is a test file
    assert all(voice_of(p) == "cmu" for p in r["train"])
    assert not any("librivox" in p.name or "cards" in p.name for p in r["train"])
    assert {voice_of(p) for p in r["test"]} == {"cmu", "librivox"}
    for p in r["train"] + r["test"]:
        x = load_wav(p, 16000)
        assert len(x) > 16000 and 0.01 < np.max(np.abs(x)) <= 1
    text = r["split_md"].read_text()
    assert "BSD-2" in text and "goforward.raw" in text
    # the copy is sample-exact for WAV sources
    src = load_wav(POCKETSPHINX_DIR / "cards/004.wav")
    np.testing.assert_array_equal(load_wav(tmp_path / "test/cmu/cards_004.wav"), src)


@pytest.mark.skipif(not (ASTERISK_DIR / "fr_CA_f_June").is_dir(),
                    reason="asterisk-core-sounds-fr-g722 not installed")
def test_prepare_asterisk_june_halves_are_disjoint_and_fixed(tmp_path):
    r = prepare_asterisk(tmp_path, speakers=["june"])
    val, test = list_wavs(tmp_path / "val" / "june"), list_wavs(tmp_path / "test" / "june")
    assert val == sorted(r["val"]) and test == sorted(r["test"]) and not r["train"]
    assert len(val) > 150 and len(test) > 150
    assert not {p.name for p in val} & {p.name for p in test}
    # alternating by source path: the two halves are within a few files and minutes of each other
    assert abs(len(val) - len(test)) < 0.1 * len(val)
    for p in val[:5] + test[:5]:
        x = load_wav(p, 16000)
        assert len(x) >= MIN_PROMPT_SECONDS * 16000
    assert r["skipped"] and all(s.startswith("fr_CA_f_June/") for s in r["skipped"])
    md = r["md"].read_text()
    assert "CC-BY-SA 3.0" in md and "val/june" in md
    # a second run gives the same halves (stale files are removed first)
    r2 = prepare_asterisk(tmp_path, speakers=["june"])
    assert sorted(r2["val"]) == val and sorted(r2["test"]) == test


def test_prepare_asterisk_names_the_missing_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="asterisk-core-sounds-it-g722"):
        prepare_asterisk(tmp_path, source=tmp_path / "none", speakers=["carlo"])


def test_sentences_deterministic_and_varied():
    a, b = make_sentences(50, seed=3), make_sentences(50, seed=3)
    assert a == b and a != make_sentences(50, seed=4)
    assert len(set(a)) > 45 and any(s.endswith("?") for s in a)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_synthesize_speech(tmp_path):
    paths = synthesize_speech(tmp_path / "s", minutes=0.25, seed=7)
    total = sum(len(load_wav(p, 16000)) for p in paths) / 16000
    assert 15 <= total < 45
    again = synthesize_speech(tmp_path / "t", minutes=0.25, seed=7)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    x = load_wav(paths[0])
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    assert spec[(f > 100) & (f < 4000)].sum() > 0.7 * spec.sum()  # speech-like spectrum
    assert (tmp_path / "s" / "MANIFEST_7.tsv").exists()


@pytest.mark.skipif(shutil.which("flite") is None or shutil.which("text2wave") is None,
                    reason="flite/festival not installed (scripts/install.sh installs them)")
def test_synthesize_speech_other_engines(tmp_path):
    paths = synthesize_speech(tmp_path / "s", minutes=0.4, seed=3, engines=["flite", "festival"],
                              speed_perturb=0.1, prefix="tts")
    manifest = (tmp_path / "s" / "MANIFEST_3.tsv").read_text().splitlines()[1:]
    assert len(manifest) == len(paths) and all(p.name.startswith("tts_3_") for p in paths)
    used = {row.split("\t")[1].split(":")[0] for row in manifest}
    assert used == {"flite", "festival"}                    # both engines drawn in 24 s of speech
    assert all(" speed x" in row for row in manifest)
    for p in paths:
        x = load_wav(p, 16000)
        assert 0.05 < np.max(np.abs(x)) < 0.9
    again = synthesize_speech(tmp_path / "t", minutes=0.4, seed=3, engines=["flite", "festival"],
                              speed_perturb=0.1, prefix="tts")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    with pytest.raises(RuntimeError, match="unknown speech engine"):
        synthesize_speech(tmp_path / "u", minutes=0.1, engines=["say"])


def test_prepare_data_refuses_an_unknown_engine_before_writing(capsys, tmp_path):
    from tests.helpers import run
    rc, out, err = run(capsys, "prepare-data", "--out", tmp_path / "d", "--engines", "espeak-ng,say")
    assert rc == 1 and "unknown speech engine 'say'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()
