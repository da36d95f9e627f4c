"""The README's refinement commands at their defaults: the network refined, the SVM on the
refined network, Ctrl-C and resume, two CPU processes, the learning-rate finder (see
test_readme.py for how commands are taken from the README and shrunk)."""

import re
import signal
import time

from tests.acceptance.claims import DNN, DNN_BIG, LR_FIND, RESUME, SVM_REFINED, TORCHRUN_CPU
from tests.acceptance.conftest import EPOCHS, command, ok, run_id_of, shrunk, stop, store


def test_refinement_runs_at_every_default(workspace):
    result = ok(workspace.run(shrunk(command(DNN))))
    params = store(workspace).get_run(run_id_of(result.stdout)).data.params
    assert params["classifier.batch_size"] == "16"  # 224 px's, resolved
    assert params["classifier.schedule"] == "cosine" and params["classifier.lr"] == "0.005"


def test_refinement_with_resnet50_at_448(workspace):
    result = ok(workspace.run(shrunk(command(DNN_BIG))))
    assert "finished: dnn, resnet50" in result.stdout


def test_svm_on_the_refined_network_at_its_defaults(workspace):
    result = ok(workspace.run(shrunk(command(SVM_REFINED))))
    assert "SVM C =" in result.stdout


def test_ctrl_c_then_resume_continues_the_run(workspace):
    """A refinement interrupted by Ctrl-C after its first epoch, continued with the command
    the interruption printed, which is the README's `resume=<run id>` line."""
    long_run = shrunk(command(DNN)).replace(f" {EPOCHS}", " classifier.epochs=40")
    started = workspace.start(long_run, "interrupted.log")
    log = workspace.folder / "interrupted.log"
    try:
        deadline = time.time() + 240
        checkpoints = workspace.folder / "data" / "checkpoints"
        while not list(checkpoints.glob(f"{own_run_id(log)}/last.pt")):
            assert started.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        started.send_signal(signal.SIGINT)
        started.wait(timeout=120)
    finally:
        stop(started)
    output = log.read_text()
    assert started.returncode == 130, output[-3000:]
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    printed = re.fullmatch(
        r"interrupted after epoch (\d+); continue with: (python -m src\.run resume=(\w+))", last
    )
    assert printed, last
    epoch, line, run_id = int(printed.group(1)), printed.group(2), printed.group(3)
    client = store(workspace)
    assert client.get_run(run_id).info.status == "KILLED"
    assert command(RESUME).replace("<run id>", run_id) == line
    # the printed line, with one epoch more than it had run, to finish soon
    resumed = ok(workspace.run(f"{line} classifier.epochs={epoch + 2}"))
    assert run_id_of(resumed.stdout) == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
    assert steps == list(range(epoch + 2))


def own_run_id(log) -> str:
    """The id a run printed in its log when it started; a placeholder until it has."""
    started = re.search(r"^run (\w{32}) started", log.read_text(), re.M)
    return started.group(1) if started else "not-started-yet"


def test_the_learning_rate_finder_suggests_a_rate_and_the_command(workspace):
    result = ok(workspace.run(shrunk(command(LR_FIND))))
    suggested = re.search(r"classifier\.lr=([\d.e-]+)", result.stdout)
    assert suggested and float(suggested.group(1)) > 0, result.stdout[-2000:]


def test_two_cpu_processes_refine_one_network(workspace):
    result = ok(workspace.run(shrunk(command(TORCHRUN_CPU))))
    assert "finished: dnn" in result.stdout
