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
