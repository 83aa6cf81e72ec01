"""The logs route against a real paper run: the node's output and the `*.log` files of its
run directory, by level, the last lines only, never a link or a file outside the home."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sapphire.api.routes.logs import MAX_BYTES, router
from sapphire.api.security.deps import Principal, authenticated
from sapphire.paper import PaperConfig, PaperSession
from sapphire.store import Store

if TYPE_CHECKING:
    from conftest import Api  # the service harness (tests/unit/api/conftest.py)

NODE_LOG = """\
2022-01-03T10:00:00Z INFO node: started run paper-1
2022-01-03 10:00:01,250 DEBUG bars: bar 0 taken
2022-01-03T10:00:02+01:00 WARNING venue: slow answer 1.2 s
Traceback (most recent call last):
  File "node.py", line 1, in <module>
ValueError: boom
2022-01-03T10:00:03Z ERROR node: order O-1 refused
    the venue said: 10001
plain line without a level
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    """`paper`: a paper session started and left RUNNING, its node's output and its
    venue's and another log in its run directory; `away`: a run that says its directory is
    outside the home."""
    home = tmp_path_factory.mktemp("home")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.log").write_text("ERROR the contents of a file outside the home\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAPPHIRE_HOME", str(home))
        mp.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
        store = Store(f"sqlite:///{home / 'sapphire.db'}")
        config = PaperConfig(start="2022-01-03", end="2022-01-03 01:00", speed="max")
        session = PaperSession.start(config, store=store, home=home, run_id="paper")
        session.shutdown_venue()
        folder = session.run_dir
        assert (folder / "venue.log").is_file()  # the venue process's output goes there
        (home / "nodes").mkdir()
        (home / "nodes" / "paper.log").write_text(NODE_LOG)  # where the service's nodes write
        records = [
            {"timestamp": "2022-01-03T10:00:04Z", "level": "info", "event": "tick"},
            {"timestamp": "2022-01-03T10:00:05Z", "level": "critical", "event": "halted"},
        ]
        console = "2022-01-03T10:00:06.000000Z [warning  ] slow poll  [sapphire.paper]\n"
        lines = "".join(json.dumps(r) + "\n" for r in records) + console
        (folder / "structured.log").write_text(lines)
        (folder / "drift.jsonl").write_text('{"kind": "feature"}\n')  # not a log
        (folder / "linked.log").symlink_to(outside / "secret.log")
        store.start_run("away", "paper", 1, ["s"], {"run_dir": str(outside)})
        yield store, home
        store.close()


def _client(setup: tuple[Store, Path], scopes: frozenset[str] = frozenset({"read"})) -> TestClient:
    store, home = setup
    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    app.state.service = SimpleNamespace(store=store, home=home)
    principal = Principal(1, "ana", "viewer", scopes, "token")
    app.dependency_overrides[authenticated] = lambda: principal
    return TestClient(app)


@pytest.fixture(scope="module")
def client(setup: tuple[Store, Path]) -> TestClient:
    return _client(setup)


def _files(client: TestClient, **params: Any) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/v1/logs", params=params)
    assert answer.status_code == 200, answer.text
    return {f"{f['run_id']}/{f['source']}": f for f in answer.json()["files"]}


def test_the_runs_log_files_and_nothing_else(client: TestClient) -> None:
    files = _files(client)  # the running runs: paper and away
    assert sorted(files) == ["paper/node.log", "paper/structured.log", "paper/venue.log"]
    node = files["paper/node.log"]
    assert node["size"] == len(NODE_LOG.encode()) and node["truncated"] is False
    assert [line["text"] for line in node["lines"]] == NODE_LOG.splitlines()
    levels = [line["level"] for line in node["lines"]]
    assert levels == ["INFO", "DEBUG", "WARNING", "ERROR", "ERROR", "ERROR", "ERROR", "ERROR",
                      "ERROR"]  # fmt: skip
    stamps = [line["ts"] for line in node["lines"][:4]]
    assert stamps == [
        "2022-01-03T10:00:00Z", "2022-01-03T10:00:01.250000Z", "2022-01-03T09:00:02Z", None,
    ]  # fmt: skip
    structured = files["paper/structured.log"]["lines"]
    assert [(x["level"], x["ts"]) for x in structured] == [
        ("INFO", "2022-01-03T10:00:04Z"), ("CRITICAL", "2022-01-03T10:00:05Z"),
        ("WARNING", "2022-01-03T10:00:06Z"),
    ]  # fmt: skip


def test_level_limit_and_source_filter(client: TestClient) -> None:
    files = _files(client, run_id="paper", level="warning")
    node = [x["text"] for x in files["paper/node.log"]["lines"]]
    assert node[0].endswith("slow answer 1.2 s") and "started run" not in " ".join(node)
    assert len(node) == 7
    assert [x["level"] for x in files["paper/structured.log"]["lines"]] == ["CRITICAL", "WARNING"]
    last = _files(client, run_id="paper", source="node.log", limit=2)
    assert list(last) == ["paper/node.log"]
    assert [x["text"] for x in last["paper/node.log"]["lines"]] == NODE_LOG.splitlines()[-2:]
    critical = _files(client, run_id="paper", level="CRITICAL")
    assert critical["paper/node.log"]["lines"] == []


def test_a_big_log_is_read_from_its_end_only(setup: tuple[Store, Path]) -> None:
    _, home = setup
    big = home / "paper" / "paper" / "big.log"
    line = "2022-01-03T11:00:00Z INFO " + "x" * 100 + "\n"
    count = MAX_BYTES // len(line) + 500
    with open(big, "w") as fh:
        for i in range(count):
            fh.write(line.replace("INFO ", f"INFO {i:06d} "))
    try:
        body = _files(_client(setup), run_id="paper", source="big.log", limit=2000)
        read = body["paper/big.log"]
        assert read["truncated"] is True and read["size"] == big.stat().st_size
        assert len(read["lines"]) == 2000
        assert read["lines"][-1]["text"].startswith(f"2022-01-03T11:00:00Z INFO {count - 1:06d}")
        assert all(len(x["text"]) > 100 for x in read["lines"])  # no partial first line
    finally:
        big.unlink()


def test_a_directory_outside_the_home_is_never_read(client: TestClient) -> None:
    assert _files(client, run_id="away") == {}


@pytest.mark.parametrize(
    ("params", "status", "named"),
    [
        ({"level": "verbose"}, 422, "'verbose'"),
        ({"source": "../secret.log"}, 422, "'../secret.log'"),
        ({"source": "venue.db"}, 422, "'venue.db'"),
        ({"run_id": "a/b"}, 422, "'a/b'"),
        ({"run_id": "nope"}, 404, "'nope'"),
    ],
)
def test_bad_values_are_named(
    client: TestClient, params: dict[str, str], status: int, named: str
) -> None:
    answer = client.get("/api/v1/logs", params=params)
    assert answer.status_code == status and named in answer.json()["detail"]
    assert client.get("/api/v1/logs", params={"limit": 2001}).status_code == 422


def test_logs_need_the_read_scope(setup: tuple[Store, Path]) -> None:
    answer = _client(setup, frozenset()).get("/api/v1/logs")
    assert answer.status_code == 403 and "'read' scope" in answer.json()["detail"]


def test_through_the_service_with_real_credentials(api: Api) -> None:
    home = api.service.home
    api.service.store.start_run("svc-1", "paper", 1, ["s"])
    (home / "nodes").mkdir(exist_ok=True)
    (home / "nodes" / "svc-1.log").write_text("2022-01-03T10:00:00Z INFO up\n")
    viewer = api.users["viewer"]
    answer = api.client.get("/api/v1/logs", headers=viewer.headers)
    assert answer.status_code == 200, answer.text
    (log,) = answer.json()["files"]
    assert (log["source"], log["lines"][0]["level"]) == ("node.log", "INFO")
    assert api.client.get("/api/v1/logs").status_code == 401
