"""Which device a Python worker's models run on, and in which precision.

On a cluster with GPU scheduling, Spark gives each task its GPU addresses
(`spark.task.resource.gpu.amount`); a model then runs on the first one. Without task resources
(local mode, or a driver) it uses cuda:0 when torch sees a GPU, else the CPU.
"""
from __future__ import annotations


def task_device(preference: str = "auto") -> str:
    """`auto` → the task's GPU, else cuda:0 if present, else cpu; `cpu` / `cuda[:N]` as given."""
    if preference != "auto":
        return preference
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        gpus = context.resources().get("gpu") if context else None
        if gpus and gpus.addresses:
            return f"cuda:{gpus.addresses[0]}"
    except ImportError:  # the cores run without Spark too
        pass
    return "cuda:0"


def torch_dtype(name: str, device: str):
    """`auto` → bfloat16 on GPUs that have it (float16 on older ones), float32 on CPU."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def limit_cpu_threads() -> None:
    """Inside a Spark task, let torch use the task's CPUs (`spark.task.cpus`), not every core:
    with one task per core, per-task thread pools of all cores would oversubscribe the machine."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return
    context = TaskContext.get()
    if context is not None:
        import torch

        torch.set_num_threads(max(1, context.cpus()))


def load_pretrained(model_class, processor_class, location: str, *, revision: str | None, cache_dir: str | None,
                    trust_remote_code: bool, device: str = "auto", dtype: str = "auto"):
    """(processor, model, device, dtype): a checkpoint loaded through `from_pretrained`, on the task's
    device, in eval mode; on CPU, torch gets the task's CPUs only."""
    quiet_transformers()
    device = task_device(device)
    torch_type = torch_dtype(dtype, device)
    if device == "cpu":
        limit_cpu_threads()
    kwargs = {"revision": revision, "cache_dir": cache_dir, "trust_remote_code": trust_remote_code}
    processor = processor_class.from_pretrained(location, **kwargs)
    model = model_class.from_pretrained(location, dtype=torch_type, **kwargs).to(device).eval()
    return processor, model, device, torch_type


def quiet_transformers() -> None:
    """No per-load progress bars in task logs: a worker loads each model once, and the bars
    ("Loading weights", "Writing model shards") interleave across tasks."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
