"""How much does longer or wider-batch training buy?  A one-stage proxy, on the validation voice.

Trains stage 1 of the shipped default model's architecture (fresh weights, seed 0) on the same
training frames ``cascade train data/train data/synth --speaker-minutes 15`` uses, for E epochs
at batch B and learning rate LR (Adam, cosine to 5 %, exactly ``cascade train``'s loop), and
prints its reconstruction error in dB on every third prompt of June's validation half
(``data/val/june``; never trained on) and on the first 50,000 training frames.  Stage 1 sees the
signal itself, so it is the cheapest place to ask whether the greedy recipe is short of steps.

    python scripts/stage1_proxy.py B E LR [HIDDEN RES_LAYERS]   # e.g. 128 2 2e-3 (the shipped recipe)

HIDDEN and RES_LAYERS (default: the shipped model's) change the stage's network to ask what
capacity buys; the frames do not depend on them.
"""
import sys, time, torch
from model.codec import Codec
from model.train import load_training_data, cached_training_frames, frames_from_signals, _epochs, TrainOptions, _db
from model.data import load_wav
from model.evaluation import wav_files
from model.net import Cascade
torch.set_num_threads(1)
B, E, lr = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
codec = Codec.load("model/default/model.pt"); cfg = codec.cfg; q = codec.lsf_q
if len(sys.argv) > 4:
    cfg = cfg.replace(network={"hidden": int(sys.argv[4]), "res_layers": int(sys.argv[5])})
sr = cfg.signal.sample_rate
files, signals = load_training_data(["data/train", "data/synth"], sr, False, 15)
data = torch.from_numpy(cached_training_frames(signals, cfg, q, True, log=lambda m: None))
val_signals = [load_wav(f, sr) for f in wav_files("data/val/june")[::3]]  # = build/val-third
val = torch.tensor(frames_from_signals(val_signals, cfg, q), dtype=torch.float32)
ref = (data ** 2).mean()
torch.manual_seed(0); net = Cascade(cfg); st = net.stages[0]
gen = torch.Generator().manual_seed(0)
opts = TrainOptions(batch=B, lr=lr)
t = time.time()
def lf(r):
    _, y = st(r); return _db(((r - y) ** 2).mean(), ref)
last = _epochs(st.parameters(), data, lf, E, opts, gen, None, "", 0, 1)
st.eval()
with torch.no_grad():
    _, y = st(val); v = _db(((val - y) ** 2).mean(), (val ** 2).mean()).item()
    _, y = st(data[:50000]); tr = _db(((data[:50000] - y) ** 2).mean(), ref).item()
print(f"B={B} E={E} lr={lr} hidden={cfg.network.hidden} res={cfg.network.res_layers}: train-last {last:.3f} train-eval {tr:.3f} val {v:.3f} dB  {time.time()-t:.0f}s", flush=True)
