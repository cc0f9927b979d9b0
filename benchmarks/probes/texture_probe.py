"""Probe: the compare detector's networks against the raw-patch search on one texture protocol (development aid)."""
import sys, time, glob
from pathlib import Path
import numpy as np, torch
from PIL import Image
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "benchmarks"))
from anomalyvae.data import photos
from anomalyvae.data.datasets import Split
from anomalyvae.config import make_config
from anomalyvae.detectors import compare
from anomalyvae.evaluation import pixel_metrics
from sklearn.metrics import roc_auc_score

def load(root):
    rd = lambda f: torch.from_numpy(np.asarray(Image.open(f).convert("RGB"))).permute(2, 0, 1)
    train = torch.stack([rd(f) for f in sorted(glob.glob(f"{root}/train/good/*"))])
    imgs, kinds, masks = [], [], []
    for k in ["good", *photos.TEXTURE_DEFECTS]:
        for f in sorted(glob.glob(f"{root}/test/{k}/*")):
            imgs.append(rd(f)); kinds.append(k)
            stem = Path(f).name.rsplit(".", 1)[0]
            masks.append(np.zeros((128, 128), bool) if k == "good" else
                         np.asarray(Image.open(f"{root}/ground_truth/{k}/{stem}_mask.png").convert("L")) > 127)
    return train, torch.stack(imgs), np.array(kinds), masks

def report(name, maps, kinds, masks):
    s = maps.reshape(len(maps), -1).max(1)
    y = kinds != "good"
    out = {"image": roc_auc_score(y, s)}
    for k in photos.TEXTURE_DEFECTS:
        sel = (kinds == "good") | (kinds == k)
        out[k] = roc_auc_score(kinds[sel] == k, s[sel])
    out["pixel"] = pixel_metrics.pixel_auroc(list(maps), masks)
    out["aupro"] = pixel_metrics.aupro(list(maps), masks)
    print(name, " ".join(f"{k} {v:.3f}" for k, v in out.items()), flush=True)
    return out

if __name__ == "__main__":
    tex = sys.argv[1] if len(sys.argv) > 1 else "gravel"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    root = Path(f"/tmp/tx/{tex}")
    if not root.exists():
        photos.generate(root, normal=tex, n_train=150, seed=0)
    train, test, kinds, masks = load(root)
    if "--raw" in sys.argv:
        import photos as bp
        t0 = time.time(); m = bp.raw_patch(train, test, 0); report(f"raw-patch ({time.time()-t0:.0f}s)", m, kinds, masks)
    compare.STEPS = steps
    cfg = make_config(dataset="mvtec", data_dir=str(root), seed=0, lr=2e-3)
    t0 = time.time()
    n = len(train); va = train[-15:]; tr = train[:-15]
    lab = lambda t: torch.full((len(t),), -1)
    res, cfg, _ = compare.train(cfg, Split(tr, lab(tr)), Split(va, lab(va)),
                                on_epoch=lambda s: print(f"ep {s.epoch} rec {s.recon:.1f} kl {s.kl:.1f} val {s.val_loss:.3f} {s.seconds:.1f}s", flush=True) if s.epoch % 10 == 0 else None)
    print(f"train {time.time()-t0:.0f}s best {res.best_epoch}")
    net = res.model
    t0 = time.time()
    ms, recs = [], []
    for i in range(0, len(test), 32):
        m, r = compare.maps_of(net, test[i:i+32]); ms.append(m); recs.append(r)
    maps = torch.cat(ms).numpy(); print(f"score {len(test)/(time.time()-t0):.0f} img/s")
    report("compare", maps, kinds, masks)
    pooled = torch.from_numpy(maps)[:, None]
    pooled = torch.nn.functional.avg_pool2d(pooled, 9, 1, 4)[:, 0].numpy()
    report("compare-box9", pooled, kinds, masks)
    err = (torch.cat(recs) - test.float() / 255).pow(2).sum(1)
    from anomalyvae.detectors.maps import smooth
    report("restorer-err", smooth(err, 2 / 128).numpy(), kinds, masks)
