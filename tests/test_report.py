"""``syncstream report``: a page a newcomer opens offline in a real browser (Debian's headless
Chromium), its figures loaded, its numbers those of the tables read back with deltalake."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from syncstream.store import CURSOR, StateStore
from syncstream.users import read_user_lines
from tests.browser import browser
from tests.helpers import run_syncstream, sample_with_a_gap, store_paths

DATA = Path(__file__).resolve().parents[1] / "syncstream" / "data"
PNG = b"\x89PNG\r\n\x1a\n"
RECORD = {"collection/coverage", "population/membership"}
FIGURES = ["rows_per_day.png", "coverage.png", "population.png", "verification.png", "backfills.png"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample written, then a replay that starts 40 seqs past its cursor (a gap),
    and exported, a study user withdrawn, two backfills recorded,
    and the report of it all."""
    root = tmp_path_factory.mktemp("report")
    sample_with_a_gap(root)
    withdrawn = read_user_lines(DATA / "sample_study_users.txt").unwrap()[0][1]
    assert (
        run_syncstream(
            "purge", "-q", *store_paths(root), "--out", str(root / "out"), "--did", withdrawn, cwd=root
        ).returncode
        == 0
    )
    with StateStore(root / "s.sqlite", create=False) as state:
        state.backfills.record("did:plc:ewvi7nxzyoun6zhxrhs64oiz", rev="3mptbypluud2a", records=5)
        state.backfills.record("did:plc:53iucmf5ldftgqyf2ac7hmhd", reason="PDS answered 500")
    done = run_syncstream(
        "report", "--state", str(root / "s.sqlite"), "--out", str(root / "out"), "--to", "r", cwd=root
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"{root / 'r' / 'index.html'}\n")
    return root


def read_back(out: Path) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for log in sorted(out.glob("*/*/_delta_log")):
        table = DeltaTable(str(log.parent))
        found[str(log.parent.relative_to(out))] = (
            table.to_pyarrow_dataset().to_table(use_threads=False).to_pylist()
        )
        del table
    return found


PAGE = """
const cells = (id) => [...document.querySelectorAll(`#${id} tbody tr`)].map(
    (row) => [...row.cells].map((cell) => cell.textContent));
return {
    images: [...document.images].map((i) => [i.getAttribute("src"), i.complete, i.naturalWidth, i.naturalHeight, i.alt]),
    tables: cells("tables"), glance: cells("glance"), verification: cells("verification"),
    backfills: cells("backfills"), perDay: cells("rows-per-day"), coverage: cells("coverage"),
    population: cells("population"), withdrawals: cells("withdrawals"), gaps: document.getElementById("coverage-gaps").textContent,
    scripts: document.scripts.length, title: document.title,
};
"""


def test_a_browser_shows_every_figure_and_the_tables_numbers(report: Path) -> None:
    page = report / "r" / "index.html"
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html  # nothing to fetch: it reads offline
    with browser() as chromium:
        chromium.open(page.as_uri())
        seen = chromium.run(PAGE)
        shot = chromium.screenshot()
    assert shot.startswith(PNG)
    assert (seen["title"], seen["scripts"]) == ("syncstream report", 0)
    assert [image[0] for image in seen["images"]] == FIGURES
    for src, complete, width, height, alt in seen["images"]:
        assert complete and (width, height) == (900, 400) and alt, src  # decoded: the file is there
        assert (report / "r" / src).read_bytes().startswith(PNG)
    tables = read_back(report / "out")
    shown = {name: int(rows.replace(",", "")) for name, rows, *_ in seen["tables"]}
    assert shown == {name: len(rows) for name, rows in tables.items()}
    per_day: Counter[tuple[str, str]] = Counter()
    for name, rows in tables.items():
        for row in rows if name not in RECORD else ():  # no partition_date: listed, not drawn by day
            per_day[(str(row["partition_date"]), name)] += 1
    assert {(day, name): int(n) for day, name, n in seen["perDay"]} == per_day
    verified = {
        name: [
            str(Counter(str(r["verified"]).lower() if r["verified"] is not None else "null" for r in rows)[k])
            for k in ("true", "false", "null")
        ]
        for name, rows in tables.items()
        if name not in RECORD
    }
    assert {name: values for name, *values in seen["verification"]} == verified
    glance = dict(seen["glance"])
    assert (glance["withdrawn"], glance["backfills done"], glance["backfills failed"]) == ("1", "1", "1")
    assert dict(seen["backfills"]) == {"done": "1", "failed": "1", "pending": "0"}
    assert {"collection/coverage", "population/membership"} <= set(shown)
    for key in ("coverage", "population", "withdrawals"):  # numbers as shown, without their commas
        seen[key] = [[cell.replace(",", "") for cell in row] for row in seen[key]]
    record = sorted(tables["collection/coverage"], key=lambda r: (r["writer_run"], r["first_seq"]))
    assert seen["coverage"] == [
        [r["source"], r["kind"], str(r["first_seq"]), str(r["last_seq"])] for r in record
    ]
    (gap,) = [r for r in record if r["kind"] == "gap"]
    assert gap["last_seq"] - gap["first_seq"] == 39 and gap["reason"] == "replay start"
    assert seen["gaps"].startswith(f"1 gaps in 3 coverage rows: replay {gap['first_seq']}-{gap['last_seq']}")
    spells = [r for r in tables["population/membership"] if r["did"] is not None]  # after the purge
    study = [r for r in spells if r["role"] == "study"]
    shown_study = [(int(seq), int(n)) for role, seq, n in seen["population"] if role == "study"]
    assert shown_study[0] == (
        min(r["from_seq"] for r in study),
        len([r for r in study if r["from_seq"] == shown_study[0][0]]),
    )
    assert max(n for _, n in shown_study) == len(study)  # each study spell, the withdrawn one gone
    assert [(role, why, int(n)) for _, role, why, n in seen["withdrawals"]] == [("study", "withdrawal", 1)]


def test_a_missing_state_is_exit_2_and_no_report_is_made(tmp_path: Path) -> None:
    done = run_syncstream("report", "--state", str(tmp_path / "nope.sqlite"), "--to", "r", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no state store at ")
    assert list(tmp_path.iterdir()) == []


def test_population_steps_count_each_spell_from_its_first_seq_through_its_last() -> None:
    from syncstream.report.facts import population_steps
    from syncstream.store import Change, UserKind
    from syncstream.store.membership import Spell

    def spell(role: UserKind, first: int, last: int | None) -> Spell:
        return Spell("did:plc:a", role, CURSOR, first, last, None, None, Change.USERS_FILE, None)

    spells = [
        spell(UserKind.STUDY, 10, 19),
        spell(UserKind.STUDY, 15, None),
        spell(UserKind.IN_NETWORK, 12, 12),
    ]
    assert population_steps(spells) == {
        "in_network": [(12, 1), (13, 0)],
        "study": [(10, 1), (15, 2), (20, 1)],
    }
