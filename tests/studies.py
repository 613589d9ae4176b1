"""Small study files the tests write: digits, a tiny MLP, two variants, two seeds (seconds to run)."""


def tiny_study(epochs: int = 3, report_epochs: list[int] | None = None, variant_b: str = "model.hidden = [24]") -> str:
    lines = ['name = "tiny"', "seeds = [0, 1]"]
    if report_epochs:
        lines.append(f"report_epochs = {report_epochs}")
    lines += [
        "", "[dataset]", 'name = "digits"', "subset = 300", "test_subset = 100",
        "", "[model]", 'kind = "mlp"', "hidden = [16]",
        "", "[train]", "lr = 0.05", "batch_size = 32", f"epochs = {epochs}",
        "", "[variants.a]", "", "[variants.b]", variant_b, "",
    ]
    return "\n".join(lines)


def digits_cnn(name: str, variants: str, seeds=(0, 1), epochs: int = 2) -> str:
    """A one-conv CNN on 240 digits (90 to test): `variants` is the study file's [variants.*] tables."""
    return f'name = "{name}"\nseeds = {list(seeds)}\n' + f"""report_epochs = [1]
[dataset]
name = "digits"
subset = 240
test_subset = 90
[model]
kind = "cnn"
channels = [4]
kernel = 3
padding = 1
hidden = [16]
[train]
lr = 0.05
batch_size = 32
epochs = {epochs}
""" + variants


def run_args(study, out, cache, *extra) -> list[str]:
    """`nnstudy run` on a test study: its own store and cache, no bars, trained in this process."""
    return ["run", str(study), "--out", str(out), "--cache-dir", str(cache), "--quiet", "--executor", "local",
            *map(str, extra)]


def killed_then_resumed(study_file, tmp_path, checkpoint: int):
    """`nnstudy run` on two worker processes, killed (the whole process) after its `checkpoint`-th checkpoint,
    then run again to the end: (the killed run's, the resumed run's) CompletedProcess."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "nnstudy", "run", str(study_file), "--out", str(tmp_path / "out"),
           "--cache-dir", str(tmp_path / "cache"), "--quiet", "--executor", "process", "--workers", "2"]
    env = {**os.environ, "NNSTUDY_CRASH_AT": f"checkpoint.pt:{checkpoint}", "NNSTUDY_CRASH_PARENT": "1",
           "NNSTUDY_CRASH_ONCE": str(tmp_path / "crashed")}
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert killed.returncode != 0 and (tmp_path / "crashed").exists(), killed.stderr
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    return killed, resumed
