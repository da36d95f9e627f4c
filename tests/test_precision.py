"""precision=auto|fp32|bf16|fp16: what runs where, with the hardware's answer stubbed both ways."""

import logging

import pytest
import torch

from src import precision
from src.errors import UserError
from src.precision import choose_precision, cpu_flags, native_bf16

ZEN4 = frozenset({"fpu", "avx2", "avx512f", "avx512_bf16"})
SAPPHIRE_RAPIDS = frozenset({"fpu", "avx2", "avx512f", "amx_bf16", "amx_tile"})
RYZEN_5900X = frozenset({"fpu", "avx2", "fma"})  # Zen 3: no bf16 unit


@pytest.mark.parametrize("flags", [ZEN4, SAPPHIRE_RAPIDS])
def test_auto_picks_bf16_on_a_cpu_with_native_bf16(flags):
    assert choose_precision("auto", "cpu", native_bf16("cpu", flags, False)) == "bf16"


def test_auto_picks_fp32_on_a_cpu_without_native_bf16():
    assert choose_precision("auto", "cpu", native_bf16("cpu", RYZEN_5900X, False)) == "fp32"


def test_auto_on_cuda_picks_bf16_where_the_gpu_has_it_else_fp16():
    assert choose_precision("auto", "cuda", native_bf16("cuda", frozenset(), True)) == "bf16"
    assert choose_precision("auto", "cuda", native_bf16("cuda", frozenset(), False)) == "fp16"


def test_the_cpu_flags_do_not_count_for_a_gpu_nor_for_mps():
    assert not native_bf16("cuda", ZEN4, False)
    assert choose_precision("auto", "mps", native_bf16("mps", ZEN4, False)) == "fp32"


def test_explicit_bf16_without_native_support_runs_and_warns_once(caplog, monkeypatch):
    monkeypatch.setattr(precision, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="src.precision"):
        assert choose_precision("bf16", "cpu", False) == "bf16"
        assert choose_precision("bf16", "cpu", False) == "bf16"
    warnings = [r for r in caplog.records if "emulated and slower than fp32" in r.message]
    assert len(warnings) == 1


def test_explicit_bf16_with_native_support_does_not_warn(caplog, monkeypatch):
    monkeypatch.setattr(precision, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="src.precision"):
        assert choose_precision("bf16", "cpu", True) == "bf16"
    assert not caplog.records


def test_fp16_on_the_cpu_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"^precision=fp16 runs on GPUs only") as error:
        choose_precision("fp16", "cpu", True)
    assert "\n" not in str(error.value)


def test_an_unknown_precision_is_named_with_the_valid_ones():
    with pytest.raises(UserError, match=r"precision='half' is not one of auto, fp32, bf16, fp16"):
        choose_precision("half", "cpu", True)


def test_fp32_is_fp32_everywhere():
    for device_type, native in [("cpu", True), ("cpu", False), ("cuda", True), ("mps", False)]:
        assert choose_precision("fp32", device_type, native) == "fp32"


def test_cpu_flags_are_read_from_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx512f avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16\n"
    )
    assert cpu_flags(cpuinfo) == frozenset({"fpu", "avx512f", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()  # macOS, Windows: no bf16 assumed


def test_autocast_runs_matrix_products_in_the_chosen_format():
    layer, x = torch.nn.Linear(4, 4), torch.ones(2, 4)
    with precision.autocast(torch.device("cpu"), "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with precision.autocast(torch.device("cpu"), "fp32"):
        assert layer(x).dtype == torch.float32


def test_bf16_featurises_on_the_cpu_in_batches_twice_the_fp32_size():
    from omegaconf import OmegaConf

    from src.pipeline import featurize_batch_size
    from tests.conftest import ROOT

    resolution = OmegaConf.load(ROOT / "conf" / "resolution" / "224.yaml")
    sizes = resolution.featurize_batch_size, resolution.featurize_batch_size_cpu
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert featurize_batch_size(*sizes, cpu, "fp32") == 8
    assert featurize_batch_size(*sizes, cpu, "bf16") == 16  # half the bytes per activation
    assert featurize_batch_size(*sizes, gpu, "bf16") == resolution.featurize_batch_size
