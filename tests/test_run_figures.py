"""One run's figures are drawn in its worker without the statistics' libraries, and count what scikit-learn counts."""

import subprocess
import sys

import numpy as np

from nnstudy.report.run_figures import confusion_counts


def test_confusion_counts_are_hand_counted_rows_true_columns_predicted_and_equal_scikit_learns():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    counts = confusion_counts(y_true, y_pred, 4)  # class 3 never occurs: its row and column stay zero
    expected = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    assert counts.tolist() == expected.tolist()
    from nnstudy.stats.per_class import confusion

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    assert confusion_counts(y_true, y_pred, 10).tolist() == confusion(y_true, y_pred, 10).tolist()


def test_a_worker_draws_its_runs_figures_and_records_versions_without_importing_scipy_or_scikit_learn(tmp_path):
    from nnstudy.data.sources import load_digits

    load_digits(tmp_path)  # the cache built here, with scikit-learn's digits
    # A fresh process, as a worker: the cached digits, one run's figures, the library versions.
    worker = (f"from nnstudy.data.sources import load_digits\nload_digits({str(tmp_path)!r})\n"
              "import sys\nimport numpy as np\nfrom nnstudy.executors.job import library_versions, run_figures\n"
              "from nnstudy.history import EpochRow\n"
              "rows = [EpochRow(e, 1.0 / e, 0.5, 1.0 / e, 0.5, 0.1, 1.0) for e in (1, 2)]\n"
              "png = run_figures('cnn', 0, 'done', rows, {2: np.array([0, 1, 1])}, ['a', 'b'], np.array([0, 1, 0]))\n"
              "print(*sorted(png), library_versions()['scikit-learn'], 'scipy' in sys.modules, 'sklearn' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True, timeout=300)
    import sklearn

    assert out.stdout.split() == ["confusion.png", "curves.png", sklearn.__version__, "False", "False"], out.stderr


def test_the_sample_grid_is_drawn_before_training_without_the_reports_statistics(tmp_path):
    code = ("import sys\nimport numpy as np\nfrom nnstudy.report import sample_grid\n"
            f"sample_grid(np.zeros((4, 1, 8, 8), np.uint8), np.arange(4), list('abcd'), {str(tmp_path / 's.png')!r})\n"
            "print('scipy' in sys.modules, 'sklearn' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "False"], out.stderr
    assert (tmp_path / "s.png").stat().st_size > 0


def test_a_module_imported_in_the_background_is_there_once_its_thread_ends_and_a_missing_one_says_nothing(
        tmp_path, monkeypatch, capsys):
    import threading

    from nnstudy.driver.study_run import import_in_background

    (tmp_path / "h24f_background_probe.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "h24f_background_probe", raising=False)
    import_in_background("h24f_background_probe")
    import_in_background("h24f_no_such_module")  # its error is said where it is used, not here
    for t in threading.enumerate():
        if t.name.startswith("import h24f_"):
            t.join()
    assert sys.modules["h24f_background_probe"].VALUE == 42
    assert "h24f_no_such_module" not in sys.modules
    assert capsys.readouterr().err == ""

