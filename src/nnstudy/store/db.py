"""The results store: one SQLite database per output folder, the single source of truth.

It records studies, runs (resolved config, identity hash, seed, status,
times, host, library versions, dataset fingerprint), per-epoch metrics and
artifact paths. WAL mode lets worker processes write while the CLI reads.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nnstudy import run_status
from nnstudy.errors import UserError
from nnstudy.history import EPOCH_METRICS, probe_key, split_probe_key
from nnstudy.store.results import EpochRow

from . import claim_log

DB_NAME = "nnstudy.db"
SCHEMA_VERSION = 1
STATUSES = run_status.ALL

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, info TEXT NOT NULL DEFAULT '{}',
    source TEXT, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    study TEXT NOT NULL REFERENCES studies(name), variant TEXT NOT NULL, seed INTEGER NOT NULL,
    config_hash TEXT NOT NULL, config TEXT NOT NULL, dataset_fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending','running','done','diverged','failed')),
    run_dir TEXT NOT NULL, epochs_done INTEGER NOT NULL DEFAULT 0, n_params INTEGER,
    started REAL, ended REAL, wall_seconds REAL, host TEXT, device TEXT, versions TEXT,
    error TEXT, traceback TEXT, attempts INTEGER NOT NULL DEFAULT 0, settings TEXT,
    UNIQUE (study, variant, seed));
CREATE TABLE IF NOT EXISTS epochs (
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, test_loss REAL, test_acc REAL, lr REAL, seconds REAL,
    PRIMARY KEY (run, epoch));
CREATE TABLE IF NOT EXISTS probes (
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL, name TEXT NOT NULL,
    layer TEXT NOT NULL DEFAULT '', value REAL, PRIMARY KEY (run, epoch, name, layer));
CREATE TABLE IF NOT EXISTS claims (
    study TEXT NOT NULL REFERENCES studies(name), text TEXT NOT NULL, first TEXT NOT NULL, recorded REAL NOT NULL,
    added_after_results INTEGER NOT NULL DEFAULT 0, revised INTEGER NOT NULL DEFAULT 0,
    withdrawn INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT '', first_text TEXT NOT NULL DEFAULT '',
    wording TEXT NOT NULL DEFAULT '', changes TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (study, text));
CREATE TABLE IF NOT EXISTS artifacts (
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, kind TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (run, kind));
"""


@dataclass
class RunRow:
    id: int
    study: str
    variant: str
    seed: int
    config_hash: str
    config: dict
    status: str
    run_dir: Path
    epochs_done: int
    n_params: int | None
    wall_seconds: float | None
    error: str | None
    settings: dict


class Store:
    """Open (creating if needed) the store of an output folder."""

    def __init__(self, out_dir: str | os.PathLike, create: bool = True):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / DB_NAME
        if not create and not self.path.exists():
            raise UserError(f"no nnstudy results in {self.out_dir} (no {DB_NAME}); run a study first or pass --out DIR")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create output folder {self.out_dir}: {exc.strerror}; choose another --out") from exc
        if create and not os.access(self.out_dir, os.W_OK):
            raise UserError(f"output folder {self.out_dir} is not writable; fix its permissions or choose another --out")
        timeout = float(os.environ.get("NNSTUDY_DB_TIMEOUT", "30"))
        try:
            self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            with self._errors():
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                if create:
                    self.conn.executescript(_SCHEMA)  # idempotent: IF NOT EXISTS
                    self._add_missing_columns()
                    self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                version = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise UserError(self._explain(exc)) from None
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise UserError(f"{self.path} was written by another nnstudy version (schema {version and version[0]}); use a new --out folder")

    def close(self) -> None:
        self.conn.close()

    # --- plumbing ----------------------------------------------------------------------------
    def _add_missing_columns(self) -> None:
        """Columns added since schema 1 was first written; older stores gain them, empty."""
        have = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
        if "settings" not in have:
            self.conn.execute("ALTER TABLE runs ADD COLUMN settings TEXT")
        studies = {r[1] for r in self.conn.execute("PRAGMA table_info(studies)")}
        if "results_seen" not in studies:  # sticky: set once any epoch is stored, never cleared (first definitions)
            self.conn.execute("ALTER TABLE studies ADD COLUMN results_seen INTEGER NOT NULL DEFAULT 0")
            self.conn.execute("UPDATE studies SET results_seen=1 WHERE name IN (SELECT DISTINCT runs.study FROM epochs "
                              "JOIN runs ON epochs.run = runs.id)")
        claim_log.add_missing_columns(self.conn)

    def _explain(self, exc: sqlite3.DatabaseError) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return f"{self.path} is locked by another process; wait for it to finish, or use another --out"
        if "not a database" in text or "malformed" in text:
            return f"{self.path} is not a readable nnstudy database ({text}); move it away or choose another --out"
        if "readonly" in text or "unable to open" in text:
            return f"cannot write {self.path} ({text}); fix the folder's permissions or choose another --out"
        if "disk" in text or "full" in text:
            return f"cannot write {self.path} ({text}); free some disk space and run again (finished runs are kept)"
        return f"{self.path}: database error: {text}"

    @contextmanager
    def _errors(self):
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise UserError(self._explain(exc)) from None

    @contextmanager
    def transaction(self):
        """One atomic write: everything inside commits together or not at all."""
        with self._errors():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _query(self, sql: str, args=()) -> list[sqlite3.Row]:
        with self._errors():
            return self.conn.execute(sql, args).fetchall()

    # --- studies ---------------------------------------------------------------------------
    def save_study(self, name: str, spec: dict, info: dict, source: str) -> None:
        now = time.time()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO studies (name, spec, info, source, created, updated) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET spec=excluded.spec, info=excluded.info, source=excluded.source, updated=excluded.updated",
                (name, json.dumps(spec), json.dumps(info), source, now, now),
            )
            claim_log.keep_definitions(c, name, spec, now)  # append-only once the study has results

    def claim_history(self, name: str) -> dict[str, dict]:
        """Claim key -> its record: first definition, revised, added after results, withdrawn, ... (claim_log.py)."""
        with self._errors():
            return claim_log.history(self.conn, name)

    def keep_first_verdicts(self, name: str, verdicts: dict[str, dict]) -> None:
        """Each unrevised claim's verdict at its first definition (claim_log.keep_first_verdicts)."""
        with self.transaction() as c:
            claim_log.keep_first_verdicts(c, name, verdicts)

    def study(self, name: str) -> dict:
        rows = self._query("SELECT * FROM studies WHERE name=?", (name,))
        if not rows:
            known = ", ".join(r["name"] for r in self._query("SELECT name FROM studies ORDER BY name")) or "none yet"
            raise UserError(f"no study named {name!r} in {self.out_dir}; studies there: {known}")
        r = rows[0]
        return {"name": r["name"], "spec": json.loads(r["spec"]), "info": json.loads(r["info"]), "source": r["source"],
                "created": r["created"], "updated": r["updated"]}

    def study_counts(self) -> list[dict]:
        out = []
        for s in self._query("SELECT name, updated FROM studies ORDER BY name"):
            counts = {st: 0 for st in STATUSES}
            for r in self._query("SELECT status, COUNT(*) n FROM runs WHERE study=? GROUP BY status", (s["name"],)):
                counts[r["status"]] = r["n"]
            out.append({"study": s["name"], "updated": s["updated"], "runs": sum(counts.values()), **counts})
        return out

    # --- runs ------------------------------------------------------------------------------
    def sync_run(self, study: str, variant: str, seed: int, config: dict, config_hash: str,
                 fingerprint: str, run_dir: Path, force: bool = False) -> tuple[RunRow, bool]:
        """Make the stored run match the planned one; True when its old results were discarded.

        A run whose identity hash is unchanged keeps its status and results
        (so finished runs are skipped); a changed config or `force` resets it.
        """
        with self.transaction() as c:
            row = c.execute("SELECT id, config_hash FROM runs WHERE study=? AND variant=? AND seed=?",
                            (study, variant, seed)).fetchone()
            reset = row is not None and (row["config_hash"] != config_hash or force)
            if row is None:
                c.execute(
                    "INSERT INTO runs (study, variant, seed, config_hash, config, dataset_fingerprint, status, run_dir) "
                    "VALUES (?,?,?,?,?,?,'pending',?)",
                    (study, variant, seed, config_hash, json.dumps(config), fingerprint, str(run_dir)))
            elif reset:
                c.execute("DELETE FROM epochs WHERE run=?", (row["id"],))
                c.execute("DELETE FROM probes WHERE run=?", (row["id"],))
                c.execute("DELETE FROM artifacts WHERE run=?", (row["id"],))
                c.execute(
                    "UPDATE runs SET config_hash=?, config=?, dataset_fingerprint=?, status='pending', run_dir=?, "
                    "epochs_done=0, started=NULL, ended=NULL, wall_seconds=NULL, error=NULL, traceback=NULL WHERE id=?",
                    (config_hash, json.dumps(config), fingerprint, str(run_dir), row["id"]))
        return self.run(study, variant, seed), reset

    def drop_runs_except(self, study: str, keep: set[tuple[str, int]]) -> int:
        """Forget runs of variants/seeds no longer in the study file (their folders stay)."""
        gone = [r for r in self.runs(study) if (r.variant, r.seed) not in keep]
        with self.transaction() as c:
            for r in gone:
                c.execute("DELETE FROM runs WHERE id=?", (r.id,))
        return len(gone)

    def run(self, study: str, variant: str, seed: int) -> RunRow:
        rows = self._query("SELECT * FROM runs WHERE study=? AND variant=? AND seed=?", (study, variant, seed))
        return _row(rows[0])

    def runs(self, study: str) -> list[RunRow]:
        return [_row(r) for r in self._query("SELECT * FROM runs WHERE study=? ORDER BY id", (study,))]

    def mark_running(self, run_ids: list[int], settings: dict, versions: dict) -> None:
        """Runs under way, with the facts of how they train (device, precision, threads, ...)."""
        with self.transaction() as c:
            for rid in run_ids:
                c.execute("UPDATE runs SET status='running', started=COALESCE(started, ?), host=?, device=?, versions=?, "
                          "settings=?, attempts=attempts+1, error=NULL, traceback=NULL WHERE id=?",
                          (time.time(), settings.get("host") or socket.gethostname(), settings.get("device"),
                           json.dumps(versions), json.dumps(settings), rid))

    def update_settings(self, settings: dict[int, dict]) -> None:
        with self.transaction() as c:
            c.executemany("UPDATE runs SET settings=? WHERE id=?", [(json.dumps(s), rid) for rid, s in settings.items()])

    def reopen_run(self, run_id: int) -> None:
        """A finished run whose record is incomplete trains (or restores) again; its checkpoint stays."""
        with self.transaction() as c:
            c.execute("UPDATE runs SET status='pending', ended=NULL, wall_seconds=NULL WHERE id=?", (run_id,))
            c.execute("DELETE FROM artifacts WHERE run=?", (run_id,))

    def epoch_count(self, run_id: int) -> int:
        return self._query("SELECT COUNT(*) FROM epochs WHERE run=?", (run_id,))[0][0]

    def record_epochs(self, rows: dict[int, list[EpochRow]], replace: bool = True) -> None:
        """Store per-epoch metrics of several runs, atomically; `replace`: the rows are each run's whole history
        (else they are added: one epoch at a time, so a 1000-epoch run costs linear, not quadratic, writes)."""
        with self.transaction() as c:
            for rid, history in rows.items():
                if replace:
                    c.execute("DELETE FROM epochs WHERE run=?", (rid,))
                c.executemany("INSERT OR REPLACE INTO epochs VALUES (?,?,?,?,?,?,?,?)",
                              [(rid, r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr, r.seconds) for r in history])
                c.execute("UPDATE runs SET epochs_done=(SELECT COUNT(*) FROM epochs WHERE run=?) WHERE id=?", (rid, rid))
                if history:  # the study has results now, for good (see claim_log.py)
                    c.execute("UPDATE studies SET results_seen=1 WHERE name=(SELECT study FROM runs WHERE id=?)", (rid,))

    def record_probes(self, probes: dict[int, dict[int, dict[str, float]]], replace: bool = False) -> None:
        """Store probes (run -> epoch -> {"name" or "name|layer": value}); `replace`: they are the run's whole record."""
        with self.transaction() as c:
            for rid, by_epoch in probes.items():
                if replace:
                    c.execute("DELETE FROM probes WHERE run=?", (rid,))
                c.executemany("INSERT OR REPLACE INTO probes VALUES (?,?,?,?,?)",
                              [(rid, epoch, *split_probe_key(key), value)
                               for epoch, values in by_epoch.items() for key, value in values.items()])

    def probes(self, run_id: int) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for r in self._query("SELECT epoch, name, layer, value FROM probes WHERE run=? ORDER BY epoch, rowid", (run_id,)):
            out.setdefault(r["epoch"], {})[probe_key(r["name"], r["layer"]) if r["layer"] else r["name"]] = r["value"]
        return out

    def finish_run(self, run_id: int, status: str, n_params: int, wall_seconds: float, artifacts: dict[str, str],
                   settings: dict | None = None) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET status=?, n_params=?, wall_seconds=?, ended=?, settings=COALESCE(?, settings) "
                      "WHERE id=?", (status, n_params, wall_seconds, time.time(),
                                     json.dumps(settings) if settings else None, run_id))
            c.executemany("INSERT OR REPLACE INTO artifacts VALUES (?,?,?)", [(run_id, k, v) for k, v in artifacts.items()])

    def fail_run(self, run_id: int, error: str, traceback_text: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET status='failed', error=?, traceback=?, ended=? WHERE id=?",
                      (error, traceback_text, time.time(), run_id))

    def epochs(self, run_id: int) -> list[EpochRow]:
        # SQLite keeps NaN (not evaluated that epoch, or diverged) as NULL: it comes back as NaN.
        return [EpochRow(r["epoch"], *(math.nan if r[m] is None else r[m] for m in EPOCH_METRICS), r["lr"], r["seconds"])
                for r in self._query("SELECT * FROM epochs WHERE run=? ORDER BY epoch", (run_id,))]

    def artifacts(self, run_id: int) -> dict[str, str]:
        return {r["kind"]: r["path"] for r in self._query("SELECT kind, path FROM artifacts WHERE run=?", (run_id,))}

    def integrity_ok(self) -> bool:
        return self._query("PRAGMA integrity_check")[0][0] == "ok"


def _row(r: sqlite3.Row) -> RunRow:
    return RunRow(r["id"], r["study"], r["variant"], r["seed"], r["config_hash"], json.loads(r["config"]), r["status"],
                  Path(r["run_dir"]), r["epochs_done"], r["n_params"], r["wall_seconds"], r["error"],
                  json.loads((r["settings"] if "settings" in r.keys() else None) or "{}"))
