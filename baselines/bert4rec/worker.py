"""The RecBole side: ``python -m baselines.bert4rec.worker train|score SPEC.json``. Runs in its own
process; nothing here is imported by the rest of the toolkit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import compat


def _recbole():
    compat.apply()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    return Config, create_dataset, data_preparation, get_model, get_trainer, init_seed


def train(spec: dict) -> dict:
    Config, create_dataset, data_preparation, get_model, get_trainer, init_seed = _recbole()
    overrides = {**spec.get("overrides", {}), "data_path": spec["data_path"], "checkpoint_dir": spec["checkpoint_dir"],
                 "device": "cpu", "use_gpu": False}
    config = Config(model="BERT4Rec", dataset=spec["name"], config_file_list=[spec["config_file"]], config_dict=overrides)
    init_seed(config["seed"], config["reproducibility"])
    from recbole.utils import init_logger

    init_logger(config)  # RecBole's per-epoch lines on the console, which the runner streams (and log/ in the cwd)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if spec.get("resume_file"):
        trainer.resume_checkpoint(spec["resume_file"])  # weights, optimizer, epoch, best score so far
    resumed_at = int(trainer.start_epoch)
    best_score, best_result = trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    return {"model_file": trainer.saved_model_file, "best_valid_score": float(best_score), "start_epoch": resumed_at,
            "best_valid": {k: float(v) for k, v in best_result.items()},
            "recbole_test": {k: float(v) for k, v in test_result.items()},
            "n_items": int(dataset.item_num), "n_users": int(dataset.user_num)}


def score(spec: dict) -> dict:
    import numpy as np
    import torch

    Config, create_dataset, data_preparation, get_model, get_trainer, init_seed = _recbole()
    from recbole.data.interaction import Interaction

    ckpt = torch.load(spec["model_file"], map_location="cpu")
    config = ckpt["config"]
    config["data_path"] = spec["data_path"]
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset)
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(ckpt.get("other_parameter"))
    model.eval()
    field = dataset.iid_field
    vocab = {tok: i for i, tok in enumerate(dataset.field2id_token[field]) if i > 0}
    max_len = config["MAX_ITEM_LIST_LENGTH"]
    instances = json.loads(Path(spec["instances"]).read_text())
    k = max(len(x["candidates"]) for x in instances)
    out = np.full((len(instances), k), -np.inf, dtype=np.float64)
    batch = 256
    with torch.no_grad():
        for s in range(0, len(instances), batch):
            chunk = instances[s:s + batch]
            seqs = [[vocab[t] for t in x["history"] if t in vocab][-(max_len - 1):] for x in chunk]
            seq = torch.zeros((len(chunk), max_len), dtype=torch.long)
            for i, q in enumerate(seqs):
                seq[i, : len(q)] = torch.tensor(q, dtype=torch.long)
            # an empty history reads as a lone mask token; its candidates keep score -inf below
            inter = Interaction({model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: torch.tensor([len(q) for q in seqs])})
            scores = model.full_sort_predict(inter).view(len(chunk), -1).numpy()
            for i, x in enumerate(chunk):
                for j, c in enumerate(x["candidates"]):
                    if c in vocab and seqs[i]:
                        out[s + i, j] = scores[i, vocab[c]]
    np.save(spec["scores_out"], out)
    return {"scored": len(instances), "unknown_history": int(sum(1 for x in instances
                                                                 if not any(t in vocab for t in x["history"])))}


def main() -> None:
    cmd, spec_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = {"train": train, "score": score}[cmd](spec)
    except BaseException as exc:  # the cause, for the parent to report (never the log's last line)
        import traceback

        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        Path(spec["result_out"] + ".error").write_text(json.dumps({
            "type": type(exc).__name__, "message": (str(exc).splitlines() or [""])[0][:500],
            "where": f"{Path(frame.filename).name}:{frame.lineno}" if frame else None}))
        raise
    Path(spec["result_out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
