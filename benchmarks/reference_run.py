"""torchvision's reference classification script, run as it is, timed from outside:
`python -m benchmarks.reference_run --reference PATH --seed S -- <train.py args>`.

PATH is a checkout's `references/classification` folder (never copied into this repository).
Its `train_one_epoch` is wrapped to time each epoch and its `evaluate` to keep the last
top-1 accuracy; nothing inside the loop changes. The script's own output goes to stderr; the
last line on stdout is one JSON object:

  {"test_accuracy": 0.9, "test_class_avg_accuracy": 0.9, "train_images_per_second": [...],
   "train_seconds": [...], "test_accuracy_per_epoch": [...], "seconds": 41.2}

`test_class_avg_accuracy` comes from one more pass of the final model over the test loader
after training (the script reports top-1 only), outside every timed part.
"""

import argparse
import contextlib
import inspect
import json
import random
import sys
import time

import numpy as np
import torch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reference_run", description=__doc__)
    parser.add_argument("--reference", required=True, help="references/classification folder")
    parser.add_argument("--seed", type=int, default=0, help="torch, numpy and random")
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)  # after it: train.py's own
    options, script_args = parser.parse_args(argv[:split]), argv[split + 1 :]
    sys.path.insert(0, options.reference)
    seed_everything(options.seed)
    import train  # the reference's module, found through the path above

    started = time.perf_counter()
    timing = instrument(train)
    with contextlib.redirect_stdout(sys.stderr):
        train.main(train.get_args_parser().parse_args(script_args))
        class_avg = class_avg_accuracy(*timing["last_evaluation"])
    print(
        json.dumps(
            {
                "test_accuracy": timing["accuracies"][-1] / 100,
                "test_class_avg_accuracy": class_avg,
                "train_images_per_second": timing["images_per_second"],
                "train_seconds": timing["seconds"],
                "test_accuracy_per_epoch": [a / 100 for a in timing["accuracies"]],
                "seconds": time.perf_counter() - started,
            }
        ),
        flush=True,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def instrument(train) -> dict:
    """Replace `train.train_one_epoch` and `train.evaluate` (looked up by `train.main` at each
    call) with timed and recording versions; the returned dict fills as they run."""
    timing = {"images_per_second": [], "seconds": [], "accuracies": [], "last_evaluation": None}
    train_one_epoch, evaluate = train.train_one_epoch, train.evaluate
    epoch_signature = inspect.signature(train_one_epoch)
    evaluate_signature = inspect.signature(evaluate)

    def timed_epoch(*args, **kwargs):
        loader = epoch_signature.bind(*args, **kwargs).arguments["data_loader"]
        start = time.perf_counter()
        result = train_one_epoch(*args, **kwargs)
        elapsed = time.perf_counter() - start
        timing["seconds"].append(elapsed)
        timing["images_per_second"].append(len(loader.dataset) / elapsed)
        return result

    def recorded_evaluate(*args, **kwargs):
        accuracy = evaluate(*args, **kwargs)
        bound = evaluate_signature.bind(*args, **kwargs).arguments
        if not bound.get("log_suffix"):  # "EMA": the averaged model's, not the trained one's
            timing["accuracies"].append(float(accuracy))
            timing["last_evaluation"] = (bound["model"], bound["data_loader"], bound["device"])
        return accuracy

    train.train_one_epoch, train.evaluate = timed_epoch, recorded_evaluate
    return timing


def class_avg_accuracy(model, loader, device) -> float:
    """The mean over classes of each class's share of correct predictions."""
    model.eval()
    correct, total = {}, {}
    with torch.inference_mode():
        for images, targets in loader:
            predictions = model(images.to(device)).argmax(1).cpu()
            for target, prediction in zip(targets.tolist(), predictions.tolist(), strict=True):
                total[target] = total.get(target, 0) + 1
                correct[target] = correct.get(target, 0) + (target == prediction)
    return sum(correct[c] / total[c] for c in total) / len(total)


if __name__ == "__main__":
    main()
