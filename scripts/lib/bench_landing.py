#!/usr/bin/env python3
"""Landing micro-benchmark: the cheapest durable way to land a page of users in Postgres.

Run through scripts/bench-landing (creates the venv). Every variant lands the *same* users
(fetched once from the built-in emulator, credentials stripped) into its own schema of a
scratch database that is created here and dropped at the end. Variants are interleaved in
rounds (round r runs every variant once, starting at a rotating offset), so box noise
(compiles, checkpoints) hits them alike; the summary is the median over rounds.

Per measurement: wall time, CPU of the variant's own backend(s) (utime+stime from
/proc/<pg_backend_pid()>/stat), CPU of the shared background processes (walwriter,
checkpointer, background writer; they also serve anything else running on the server),
WAL bytes (pg_current_wal_lsn()) and the client's own CPU.

Client-side encoding (binary arrays, COPY payloads) is done before the clock starts, so
the wall figure is Postgres + protocol, not Python. synchronous_commit etc. are left as
the server has them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.numeric import Int4, Int8

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CREDENTIALS = ("password", "salt", "md5", "sha1", "sha256")
SEED = "landbench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds

# --------------------------------------------------------------------------------------
# Pre-encoded binary parameters: the array is built before the clock starts and psycopg
# sends the bytes as they are (binary format, like sqlx does).
# --------------------------------------------------------------------------------------
OID_TEXT, OID_BYTEA, OID_TEXT_ARR, OID_BYTEA_ARR = 25, 17, 1009, 1001


class TextArr:
    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


class ByteaArr(TextArr):
    __slots__ = ()


class TextArrDumper(Dumper):
    format = Format.BINARY
    oid = OID_TEXT_ARR

    def dump(self, obj):
        return obj.data


class ByteaArrDumper(TextArrDumper):
    oid = OID_BYTEA_ARR


psycopg.adapters.register_dumper(TextArr, TextArrDumper)
psycopg.adapters.register_dumper(ByteaArr, ByteaArrDumper)


def array_body(items: list[bytes]) -> bytes:
    pk = struct.Struct(">i").pack
    return b"".join(pk(len(x)) + x for x in items)


def array_bin(elem_oid: int, n: int, body: bytes) -> bytes:
    # ndim, has_null, elem oid, dim length, lower bound, then (len, bytes) per element
    return struct.pack(">iiIii", 1, 0, elem_oid, n, 1) + body


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)


def fld(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


# --------------------------------------------------------------------------------------
# Data: realistic users from the emulator
# --------------------------------------------------------------------------------------
def compose_address(loc):
    def part(*path):
        v = loc
        for p in path:
            if not isinstance(v, dict) or p not in v:
                return None
            v = v[p]
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            return str(v)
        return None

    parts = [part("street", "number"), part("street", "name"), part("city"), part("state"),
             part("country")]
    if all(p is not None for p in parts):
        return f"{parts[0]} {parts[1]}, {parts[2]}, {parts[3]}, {parts[4]}"
    return loc


def kafka_message(uid: str, u: dict) -> bytes:
    """The flat Kafka JSON (model::encode_message)."""
    m = {"id": uid}

    def copy(key, *path):
        v = u
        for p in path:
            if not isinstance(v, dict) or p not in v:
                return
            v = v[p]
        m[key] = v

    copy("first_name", "name", "first")
    copy("last_name", "name", "last")
    copy("gender", "gender")
    loc = u.get("location")
    if isinstance(loc, dict):
        m["address"] = compose_address(loc)
        if "postcode" in loc:
            pc = loc["postcode"]
            m["post_code"] = str(pc) if isinstance(pc, (int, float)) and not isinstance(pc, bool) else pc
    copy("email", "email")
    copy("username", "login", "username")
    copy("dob", "dob", "date")
    copy("registered_date", "registered", "date")
    copy("phone", "phone")
    copy("picture", "picture", "medium")
    return json.dumps(m, separators=(",", ":"), ensure_ascii=False).encode()


def fetch_users(base_url: str, total: int, per_request: int = 5000, first_page: int = 1):
    users = []
    page = first_page
    while len(users) < total:
        n = min(per_request, total - len(users))
        url = f"{base_url}?results={n}&seed={SEED}&page={page}"
        with urllib.request.urlopen(url, timeout=60) as r:
            body = json.loads(r.read())
        for u in body["results"]:
            login = u.get("login")
            if isinstance(login, dict):
                for f in CREDENTIALS:
                    login.pop(f, None)
            uid = login["uuid"]
            raw = json.dumps(u, separators=(",", ":"), ensure_ascii=False).encode()
            users.append((uid.encode(), raw, kafka_message(uid, u)))
        page += 1
    return users


class Page:
    """One page of users with every encoding the variants need (built lazily, cached)."""

    def __init__(self, number: int, users: list):
        self.number = number
        self.users = users
        self.n = len(users)
        self.fetched_at_ms = 1_767_225_600_000 + number  # fixed, distinct per page
        self._cache = {}

    def _get(self, key, build):
        v = self._cache.get(key)
        if v is None:
            v = self._cache[key] = build()
        return v

    def ids(self):
        return self._get("ids", lambda: TextArr(array_bin(OID_TEXT, self.n, array_body([u[0] for u in self.users]))))

    def raws_text(self):
        return self._get("raws_text", lambda: TextArr(array_bin(OID_TEXT, self.n, self._raw_body())))

    def raws_bytea(self):
        return self._get("raws_bytea", lambda: ByteaArr(array_bin(OID_BYTEA, self.n, self._raw_body())))

    def _raw_body(self):
        return self._get("raw_body", lambda: array_body([u[1] for u in self.users]))

    def msgs(self):
        return self._get("msgs", lambda: ByteaArr(array_bin(OID_BYTEA, self.n, array_body([u[2] for u in self.users]))))

    def stage_copy(self, rawtype: str) -> bytes:
        """COPY stage (ord int4, id text, raw <rawtype>, msg bytea) FROM STDIN (FORMAT binary)."""
        def build():
            jsonb = rawtype == "jsonb"
            rows = [struct.pack(">hii", 4, 4, i + 1) + fld(u[0]) + fld((b"\x01" + u[1]) if jsonb else u[1]) + fld(u[2])
                    for i, u in enumerate(self.users)]
            return COPY_HEADER + b"".join(rows) + COPY_TRAILER
        return self._get("stage_" + rawtype, build)

    def direct_users_copy(self, batch_id: int) -> bytes:
        """COPY users_landed (id, fetched_at, batch_id, raw): batch_id spliced in at run time."""
        def build():
            ts = struct.pack(">iq", 8, self.fetched_at_ms * 1000 - PG_EPOCH_US)
            segs = []
            prev_tail = COPY_HEADER
            for u in self.users:
                segs.append(prev_tail + struct.pack(">h", 4) + fld(u[0]) + ts)
                prev_tail = fld(u[1])
            segs.append(prev_tail + COPY_TRAILER)
            return segs
        segs = self._get("direct_users_segs", build)
        return struct.pack(">iq", 8, batch_id).join(segs)

    def direct_outbox_copy(self) -> bytes:
        def build():
            ms = struct.pack(">iq", 8, self.fetched_at_ms)
            return COPY_HEADER + b"".join(struct.pack(">h", 3) + fld(u[0]) + fld(u[2]) + ms for u in self.users) + COPY_TRAILER
        return self._get("direct_outbox", build)

    def prebuild(self, variant):
        for f in variant.needs:
            f(self)

    def drop_cache(self):
        self._cache.clear()


# --------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------
BATCH_SQL = (
    "INSERT INTO landing_batches (seed, page, fetched_at, users) "
    "VALUES (%b, %b, 'epoch'::timestamptz + %b * interval '1 millisecond', %b) "
    "ON CONFLICT (seed, page) DO NOTHING RETURNING batch_id")

# Today (src/landing.rs), verbatim apart from placeholders.
TODAY_USERS_SQL = (
    "WITH input AS ( "
    "  SELECT DISTINCT ON (id) id, raw, ord "
    "  FROM UNNEST(%b::text[], %b::text[]) WITH ORDINALITY AS t(id, raw, ord) "
    "  ORDER BY id, ord), "
    "ins AS ( "
    "  INSERT INTO users_landed (id, fetched_at, batch_id, raw) "
    "  SELECT id, 'epoch'::timestamptz + %b * interval '1 millisecond', %b, raw::jsonb "
    "  FROM input ORDER BY ord "
    "  ON CONFLICT (id) DO NOTHING RETURNING id) "
    "INSERT INTO outbox (user_id) "
    "SELECT input.id FROM input JOIN ins USING (id) ORDER BY input.ord")

# Today's statement shape, outbox carrying the ready message.
TODAY_MSG_USERS_SQL = (
    "WITH input AS ( "
    "  SELECT DISTINCT ON (id) id, raw, msg, ord "
    "  FROM UNNEST(%b::text[], %b::text[], %b::bytea[]) WITH ORDINALITY AS t(id, raw, msg, ord) "
    "  ORDER BY id, ord), "
    "ins AS ( "
    "  INSERT INTO users_landed (id, fetched_at, batch_id, raw) "
    "  SELECT id, 'epoch'::timestamptz + %b * interval '1 millisecond', %b, raw::jsonb "
    "  FROM input ORDER BY ord "
    "  ON CONFLICT (id) DO NOTHING RETURNING id) "
    "INSERT INTO outbox (key, message, fetched_at_ms) "
    "SELECT input.id, input.msg, %b FROM input JOIN ins USING (id) ORDER BY input.ord")

RAW_CAST = {"jsonb": "raw::jsonb", "json": "raw::json", "text": "raw", "bytea": "raw"}
RAW_PARAM = {"jsonb": "text", "json": "text", "text": "text", "bytea": "bytea"}


def one_statement_sql(rawtype: str) -> str:
    """Batch row + users + outbox in one statement (one round trip, implicit transaction)."""
    return (
        "WITH batch AS ( "
        "  INSERT INTO landing_batches (seed, page, fetched_at, users) "
        "  VALUES (%b, %b, 'epoch'::timestamptz + %b * interval '1 millisecond', %b) "
        "  ON CONFLICT (seed, page) DO NOTHING RETURNING batch_id, fetched_at), "
        "input AS ( "
        "  SELECT DISTINCT ON (id) id, raw, msg, ord "
        f"  FROM UNNEST(%b::text[], %b::{RAW_PARAM[rawtype]}[], %b::bytea[]) "
        "       WITH ORDINALITY AS t(id, raw, msg, ord) "
        "  ORDER BY id, ord), "
        "ins AS ( "
        "  INSERT INTO users_landed (id, fetched_at, batch_id, raw) "
        f"  SELECT i.id, b.fetched_at, b.batch_id, {RAW_CAST[rawtype].replace('raw', 'i.raw')} "
        "  FROM input i CROSS JOIN batch b ORDER BY i.ord "
        "  ON CONFLICT (id) DO NOTHING RETURNING id) "
        "INSERT INTO outbox (key, message, fetched_at_ms) "
        "SELECT i.id, i.msg, %b FROM input i JOIN ins USING (id) ORDER BY i.ord")


def lean_sql(rawtype: str) -> str:
    """One statement without DISTINCT ON or CTE materialisation of the page.

    Precondition: the page has no duplicate ids (the daemon dedupes the page before landing;
    ids are unique per page in practice). Cross-page duplicates are still skipped by
    ON CONFLICT DO NOTHING, and their outbox rows with them (semi-join on what was inserted).
    Set-returning functions in the select list stream the arrays (no tuplestore, no sort of
    the raw users); only (id, message, ord) of the outbox are sorted, to keep seq in page order.
    """
    return (
        "WITH batch AS ( "
        "  INSERT INTO landing_batches (seed, page, fetched_at, users) "
        "  VALUES (%b, %b, 'epoch'::timestamptz + %b * interval '1 millisecond', %b) "
        "  ON CONFLICT (seed, page) DO NOTHING RETURNING batch_id, fetched_at), "
        "ins AS ( "
        "  INSERT INTO users_landed (id, fetched_at, batch_id, raw) "
        f"  SELECT unnest(%b::text[]), b.fetched_at, b.batch_id, {RAW_CAST[rawtype].replace('raw', f'unnest(%b::{RAW_PARAM[rawtype]}[])')} "
        "  FROM batch b "
        "  ON CONFLICT (id) DO NOTHING RETURNING id) "
        "INSERT INTO outbox (key, message, fetched_at_ms) "
        "SELECT m.id, m.msg, %b FROM ( "
        "  SELECT unnest(%b::text[]) AS id, unnest(%b::bytea[]) AS msg, "
        "         generate_subscripts(%b::text[], 1) AS ord) m "
        "WHERE m.id IN (SELECT id FROM ins) ORDER BY m.ord")


def lean_params(p: Page, rawtype: str):
    raws = p.raws_bytea() if rawtype == "bytea" else p.raws_text()
    ids = p.ids()
    return batch_params(p) + (ids, raws, Int8(p.fetched_at_ms), ids, p.msgs(), ids)


STAGE_SQL = (
    "WITH batch AS ( "
    "  INSERT INTO landing_batches (seed, page, fetched_at, users) "
    "  VALUES (%b, %b, 'epoch'::timestamptz + %b * interval '1 millisecond', %b) "
    "  ON CONFLICT (seed, page) DO NOTHING RETURNING batch_id, fetched_at), "
    "input AS (SELECT DISTINCT ON (id) id, raw, msg, ord FROM stage ORDER BY id, ord), "
    "ins AS ( "
    "  INSERT INTO users_landed (id, fetched_at, batch_id, raw) "
    "  SELECT i.id, b.fetched_at, b.batch_id, i.raw FROM input i CROSS JOIN batch b ORDER BY i.ord "
    "  ON CONFLICT (id) DO NOTHING RETURNING id) "
    "INSERT INTO outbox (key, message, fetched_at_ms) "
    "SELECT i.id, i.msg, %b FROM input i JOIN ins USING (id) ORDER BY i.ord")


def batch_params(p: Page):
    return (SEED, Int4(p.number), Int8(p.fetched_at_ms), Int4(p.n))


# --------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------
class Variant:
    def __init__(self, name, desc, rawtype, outbox, land, *, conns=1, autocommit=False, fk=True,
                 needs=(), session_sql=(), pipeline=False, round_trips=""):
        self.name, self.desc, self.rawtype, self.outbox = name, desc, rawtype, outbox
        self.land, self.conns, self.autocommit, self.fk = land, conns, autocommit, fk
        self.needs, self.session_sql, self.pipeline = needs, session_sql, pipeline
        self.round_trips = round_trips


def land_today(conn, p: Page):
    with conn.cursor() as cur:
        cur.execute(BATCH_SQL, batch_params(p))  # psycopg sends BEGIN first: 2 round trips
        row = cur.fetchone()
        if row is None:
            conn.rollback()
            return 0
        cur.execute(TODAY_USERS_SQL, (p.ids(), p.raws_text(), Int8(p.fetched_at_ms), Int8(row[0])))
        n = cur.rowcount
    conn.commit()
    return n


def land_today_msg(conn, p: Page):
    with conn.cursor() as cur:
        cur.execute(BATCH_SQL, batch_params(p))
        row = cur.fetchone()
        if row is None:
            conn.rollback()
            return 0
        cur.execute(TODAY_MSG_USERS_SQL, (p.ids(), p.raws_text(), p.msgs(), Int8(p.fetched_at_ms),
                                          Int8(row[0]), Int8(p.fetched_at_ms)))
        n = cur.rowcount
    conn.commit()
    return n


def cte_params(p: Page, rawtype: str):
    raws = p.raws_bytea() if rawtype == "bytea" else p.raws_text()
    return batch_params(p) + (p.ids(), raws, p.msgs(), Int8(p.fetched_at_ms))


def make_land_cte(rawtype):
    q = one_statement_sql(rawtype)

    def land(conn, p: Page):  # autocommit: the statement is its own transaction
        with conn.cursor() as cur:
            cur.execute(q, cte_params(p, rawtype))
            return cur.rowcount
    return land


def make_land_lean(rawtype):
    q = lean_sql(rawtype)

    def land(conn, p: Page):
        with conn.cursor() as cur:
            cur.execute(q, lean_params(p, rawtype))
            return cur.rowcount
    return land


def make_land_lean_pipelined(rawtype):
    q = lean_sql(rawtype)

    def land_all(conn, pages, counter):
        # One pipeline for the whole run; a Sync after every page makes each statement its
        # own (implicit) transaction, committed and flushed to WAL on its own. Results are
        # read as they come; the client never waits for page k before sending page k+1.
        with conn.pipeline() as pl:
            curs = []
            for p in pages:
                cur = conn.cursor()
                cur.execute(q, lean_params(p, rawtype))
                pl._enqueue_sync()  # psycopg private API: Sync without waiting
                curs.append(cur)
            pl.sync()
        n = 0
        for cur in curs:
            n += cur.rowcount
            cur.close()
        counter.append(n)
    return land_all


def make_land_copy_stage(rawtype):
    def land(conn, p: Page):
        with conn.cursor() as cur:
            with cur.copy("COPY stage (ord, id, raw, msg) FROM STDIN (FORMAT binary)") as cp:
                cp.write(p.stage_copy(rawtype))
            cur.execute(STAGE_SQL, batch_params(p) + (Int8(p.fetched_at_ms),))
            n = cur.rowcount
        conn.commit()  # ON COMMIT DELETE ROWS empties the stage
        return n
    return land


def land_copy_direct(conn, p: Page):
    with conn.cursor() as cur:
        cur.execute(BATCH_SQL, batch_params(p))
        row = cur.fetchone()
        if row is None:
            conn.rollback()
            return 0
        with cur.copy("COPY users_landed (id, fetched_at, batch_id, raw) FROM STDIN (FORMAT binary)") as cp:
            cp.write(p.direct_users_copy(row[0]))
        with cur.copy("COPY outbox (key, message, fetched_at_ms) FROM STDIN (FORMAT binary)") as cp:
            cp.write(p.direct_outbox_copy())
    conn.commit()
    return p.n


def stage_session(rawtype):
    return ("SET temp_buffers = '64MB'",
            f"CREATE TEMP TABLE stage (ord int4, id text, raw {rawtype}, msg bytea) ON COMMIT DELETE ROWS")


N_IDS, N_RAWT, N_RAWB, N_MSG = Page.ids, Page.raws_text, Page.raws_bytea, Page.msgs


def variants():
    v = [
        Variant("today", "4 round trips (BEGIN, batch INSERT, UNNEST CTE, COMMIT), jsonb, outbox = user id",
                "jsonb", "id", land_today, needs=(N_IDS, N_RAWT), round_trips="4"),
        Variant("today+msg", "as today, outbox carries key+message bytea+fetched_at_ms",
                "jsonb", "msg", land_today_msg, needs=(N_IDS, N_RAWT, N_MSG), round_trips="4"),
    ]
    for t in ("jsonb", "json", "text", "bytea"):
        v.append(Variant(f"1stmt/{t}", f"one CTE statement (batch+users+outbox msg), raw {t}",
                         t, "msg", make_land_cte(t), autocommit=True,
                         needs=(N_IDS, N_RAWB if t == "bytea" else N_RAWT, N_MSG), round_trips="1"))
    lean_needs = (N_IDS, N_RAWB, N_MSG)
    v += [
        Variant("1stmt/bytea wm64", "as 1stmt/bytea, session work_mem = 64MB (no sort/CTE spill to temp files)",
                "bytea", "msg", make_land_cte("bytea"), autocommit=True, session_sql=("SET work_mem = '64MB'",),
                needs=(N_IDS, N_RAWB, N_MSG), round_trips="1"),
        Variant("lean/bytea", "one statement, no DISTINCT ON (page deduped by the client), streamed unnest, bytea",
                "bytea", "msg", make_land_lean("bytea"), autocommit=True, needs=lean_needs, round_trips="1"),
        Variant("lean/bytea/nofk", "as lean/bytea, users_landed.batch_id without FOREIGN KEY",
                "bytea", "msg", make_land_lean("bytea"), autocommit=True, fk=False, needs=lean_needs,
                round_trips="1"),
        Variant("copy-stage/bytea", "COPY binary into temp stage, then one CTE INSERT..ON CONFLICT DO NOTHING, bytea",
                "bytea", "msg", make_land_copy_stage("bytea"), session_sql=stage_session("bytea"),
                needs=(lambda p: p.stage_copy("bytea"),), round_trips="5 (BEGIN, COPY x2, stmt, COMMIT)"),
        Variant("copy-direct/bytea", "batch INSERT, then COPY binary straight into users_landed and outbox (no conflict handling)",
                "bytea", "msg", land_copy_direct,
                needs=(lambda p: p.direct_users_copy(0), Page.direct_outbox_copy),
                round_trips="7 (BEGIN, batch, COPY x2, COPY x2, COMMIT)"),
        Variant("copy-direct/bytea/nofk", "as copy-direct/bytea, without FOREIGN KEY",
                "bytea", "msg", land_copy_direct, fk=False,
                needs=(lambda p: p.direct_users_copy(0), Page.direct_outbox_copy), round_trips="7"),
        Variant("today x2conn", "today, 2 connections landing different pages concurrently",
                "jsonb", "id", land_today, conns=2, needs=(N_IDS, N_RAWT), round_trips="4"),
        Variant("lean/bytea/nofk x2conn", "lean/bytea/nofk, 2 connections concurrently",
                "bytea", "msg", make_land_lean("bytea"), conns=2, autocommit=True, fk=False,
                needs=lean_needs, round_trips="1"),
        Variant("lean/bytea/nofk pipelined", "lean/bytea/nofk, 1 connection, psycopg pipeline mode (Sync per page)",
                "bytea", "msg", make_land_lean_pipelined("bytea"), autocommit=True, fk=False, pipeline=True,
                needs=lean_needs, round_trips="1 (not awaited)"),
    ]
    return v


def schema_ddl(v: Variant) -> list[str]:
    nov = "WITH (autovacuum_enabled = off, toast.autovacuum_enabled = off)"
    fk = " REFERENCES landing_batches (batch_id)" if v.fk else ""
    outbox = ("seq bigserial PRIMARY KEY, user_id text NOT NULL" if v.outbox == "id" else
              "seq bigserial PRIMARY KEY, key text NOT NULL, message bytea NOT NULL, fetched_at_ms bigint NOT NULL")
    return [
        f"CREATE TABLE landing_batches (batch_id bigserial PRIMARY KEY, seed text NOT NULL DEFAULT '', "
        f"page integer, fetched_at timestamptz NOT NULL, users integer NOT NULL, "
        f"landed_at timestamptz NOT NULL DEFAULT now(), UNIQUE (seed, page)) {nov}",
        f"CREATE TABLE users_landed (id text PRIMARY KEY, fetched_at timestamptz NOT NULL, "
        f"batch_id bigint NOT NULL{fk}, raw {v.rawtype} NOT NULL) {nov}",
        f"CREATE TABLE outbox ({outbox}) {nov}",
    ]


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------
def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    except OSError:
        return 0.0


def proc_ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def bg_pids(postmaster: int) -> dict[str, int]:
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if proc_ppid(int(d)) != postmaster:
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        for name in ("walwriter", "checkpointer", "background writer"):
            if cmd.endswith(name):
                out[name] = int(d)
    return out


def box_busy() -> float:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    return (sum(vals[:3]) + sum(vals[5:8])) / CLK_TCK  # user nice system irq softirq steal


class Config:
    """A variant at one page size, with its schema and open connections."""

    def __init__(self, v: Variant, page_size: int, url: str, idx: int):
        self.v, self.page_size = v, page_size
        self.schema = f"v{idx:02d}_p{page_size}"
        self.url = url
        self.conns = []
        self.pids = []
        self.rounds = []

    def open(self):
        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {self.schema}")
            c.execute(f"SET search_path = {self.schema}")
            for ddl in schema_ddl(self.v):
                c.execute(ddl)
        for _ in range(self.v.conns):
            c = psycopg.connect(self.url, autocommit=self.v.autocommit, prepare_threshold=0,
                                application_name="bench-landing")
            with c.cursor() as cur:
                cur.execute(f"SET search_path = {self.schema}")
                for s in self.v.session_sql:
                    cur.execute(s)
                cur.execute("SELECT pg_backend_pid()")
                self.pids.append(cur.fetchone()[0])
            if not self.v.autocommit:
                c.commit()
            self.conns.append(c)

    def close(self):
        for c in self.conns:
            c.close()

    def land(self, pages: list[Page]) -> int:
        v = self.v
        if v.pipeline:
            out = []
            v.land(self.conns[0], pages, out)
            return out[0]
        if v.conns == 1:
            return sum(v.land(self.conns[0], p) for p in pages)
        lock = threading.Lock()
        it = iter(pages)
        counts, errors = [], []

        def worker(conn):
            n = 0
            try:
                while True:
                    with lock:
                        p = next(it, None)
                    if p is None:
                        break
                    n += v.land(conn, p)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
            counts.append(n)

        ts = [threading.Thread(target=worker, args=(c,)) for c in self.conns]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise errors[0]
        return sum(counts)


def lsn_bytes(ctl) -> int:
    return ctl.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]


def measure(cfg: Config, pages: list[Page], ctl, bg: dict[str, int], record=True):
    for p in pages:
        p.prebuild(cfg.v)
    wal0 = lsn_bytes(ctl)
    be0 = sum(proc_cpu(p) for p in cfg.pids)
    bg0 = {k: proc_cpu(p) for k, p in bg.items()}
    box0, cl0 = box_busy(), time.process_time()
    t0 = time.perf_counter()
    inserted = cfg.land(pages)
    wall = time.perf_counter() - t0
    cl1, box1 = time.process_time(), box_busy()
    be1 = sum(proc_cpu(p) for p in cfg.pids)
    bg1 = {k: proc_cpu(p) for k, p in bg.items()}
    wal1 = lsn_bytes(ctl)
    rows = sum(p.n for p in pages)
    if inserted != rows:
        raise RuntimeError(f"{cfg.v.name}/{cfg.page_size}: inserted {inserted}, expected {rows}")
    m = {
        "rows": rows, "pages": len(pages), "wall_s": wall,
        "backend_cpu_s": be1 - be0,
        "bg_cpu_s": {k: bg1[k] - bg0[k] for k in bg},
        "wal_bytes": int(wal1 - wal0),
        "client_cpu_s": cl1 - cl0,
        "box_busy_cores": (box1 - box0) / wall,
    }
    # CPU on the box not spent by this variant's backends, the background processes or the
    # client: other people's work (compiles, tests) competing for the same cores.
    m["other_cores"] = max(0.0, (box1 - box0) - m["backend_cpu_s"] - sum(m["bg_cpu_s"].values())
                           - m["client_cpu_s"]) / wall
    if record:
        cfg.rounds.append(m)
    return m


def summarize(cfg: Config):
    rs = cfg.rounds
    med = statistics.median
    bgs = [sum(r["bg_cpu_s"].values()) for r in rs]
    return {
        "variant": cfg.v.name, "page": cfg.page_size, "desc": cfg.v.desc,
        "raw_type": cfg.v.rawtype, "outbox": cfg.v.outbox, "connections": cfg.v.conns,
        "pipelined": cfg.v.pipeline, "foreign_key": cfg.v.fk, "round_trips": cfg.v.round_trips,
        "rounds": len(rs), "rows": sum(r["rows"] for r in rs),
        "records_per_s": med([r["rows"] / r["wall_s"] for r in rs]),
        "records_per_s_min": min(r["rows"] / r["wall_s"] for r in rs),
        "records_per_s_max": max(r["rows"] / r["wall_s"] for r in rs),
        "backend_cpu_s_per_m": med([r["backend_cpu_s"] / r["rows"] * 1e6 for r in rs]),
        "bg_cpu_s_per_m": med([b / r["rows"] * 1e6 for b, r in zip(bgs, rs)]),
        "pg_cpu_s_per_m": med([(r["backend_cpu_s"] + b) / r["rows"] * 1e6 for b, r in zip(bgs, rs)]),
        "wal_bytes_per_record": med([r["wal_bytes"] / r["rows"] for r in rs]),
        "client_cpu_s_per_m": med([r["client_cpu_s"] / r["rows"] * 1e6 for r in rs]),
        "box_busy_cores": med([r["box_busy_cores"] for r in rs]),
        "other_cores": med([r["other_cores"] for r in rs]),
    }


# --------------------------------------------------------------------------------------
def emulator_up(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}?results=1", timeout=2) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001
        return False


def start_emulator(listen: str):
    base = f"http://{listen}/api/1.4/"
    if emulator_up(base):
        return base, None
    for b in ("target/release/pipeline", "target/debug/pipeline"):
        binp = os.path.join(ROOT, b)
        if os.access(binp, os.X_OK):
            break
    else:
        sys.exit("bench-landing: no target/{release,debug}/pipeline binary (cargo build)")
    os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
    log = open(os.path.join(ROOT, "target", "bench", "landing-emulator.log"), "w")
    proc = subprocess.Popen([binp, "emulator", "--listen", listen], stdout=log, stderr=log)
    for _ in range(100):
        if emulator_up(base):
            return base, proc
        time.sleep(0.1)
    proc.terminate()
    sys.exit("bench-landing: emulator did not come up")


def with_db(url: str, db: str) -> str:
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


def fmt_int(x):
    return f"{x:,.0f}"


def query_check(url, cfgs):
    """Queryability: the same JSON query over each raw type (views make them all jsonb)."""
    out = []
    seen = set()
    with psycopg.connect(url, autocommit=True) as c:
        for cfg in cfgs:
            t = cfg.v.rawtype
            if t in seen or cfg.v.conns != 1 or cfg.v.pipeline or not cfg.v.name.startswith(("1stmt/", "today")):
                continue
            if cfg.v.name.endswith("nofk"):
                continue
            seen.add(t)
            expr = {"jsonb": "raw", "json": "raw::jsonb", "text": "raw::jsonb",
                    "bytea": "convert_from(raw, 'UTF8')::jsonb"}[t]
            s = cfg.schema
            c.execute(f"CREATE VIEW {s}.users_landed_json AS SELECT id, fetched_at, batch_id, {expr} AS raw "
                      f"FROM {s}.users_landed")
            n = c.execute(f"SELECT count(*) FROM {s}.users_landed").fetchone()[0]
            q = f"SELECT count(*) FROM {s}.users_landed_json WHERE raw->>'nat' = 'GB'"
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                hits = c.execute(q).fetchone()[0]
                times.append(time.perf_counter() - t0)
            size = c.execute(f"SELECT pg_table_size('{s}.users_landed'), pg_indexes_size('{s}.users_landed'), "
                             f"pg_total_relation_size('{s}.outbox')").fetchone()
            out.append({"raw_type": t, "schema": s, "rows": n, "view_expr": expr, "query": q,
                        "hits": hits, "query_s": statistics.median(times),
                        "query_s_per_m": statistics.median(times) / n * 1e6,
                        "users_landed_table_bytes_per_row": size[0] / n,
                        "users_landed_index_bytes_per_row": size[1] / n,
                        "outbox_bytes_per_row": size[2] / n})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=200_000, help="users per variant and page size (default 200000)")
    ap.add_argument("--page", action="append", type=int, help="users per page: 1000 and/or 5000 (default both)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    ap.add_argument("--variants", help="comma-separated subset of variant names (today is always included)")
    ap.add_argument("--emulator", default=os.environ.get("BENCH_LANDING_EMULATOR", "127.0.0.1:18555"))
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "landing.json"))
    ap.add_argument("--keep-db", action="store_true", help="do not drop the scratch database")
    ap.add_argument("--list", action="store_true", help="list the variants and exit")
    a = ap.parse_args()
    vs = variants()
    if a.list:
        for v in vs:
            print(f"{v.name:24} {v.desc}")
        return
    if a.variants:
        want = set(a.variants.split(",")) | {"today"}
        unknown = want - {v.name for v in vs}
        if unknown:
            sys.exit(f"bench-landing: unknown variants {sorted(unknown)} (see --list)")
        vs = [v for v in vs if v.name in want]
    page_sizes = a.page or [1000, 5000]
    for ps in page_sizes:
        if ps not in (1000, 5000) or a.users % (ps * a.rounds):
            sys.exit(f"bench-landing: --page 1000|5000 and --users a multiple of page x rounds ({ps} x {a.rounds})")
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url:
        sys.exit("bench-landing: DATABASE_URL not set (eval \"$(scripts/stack env)\")")

    started = time.time()
    base, emu = start_emulator(a.emulator)
    try:
        warm_n = max(page_sizes) * 2
        t0 = time.perf_counter()
        users = fetch_users(base, a.users + warm_n)
        ids = {u[0] for u in users}
        if len(ids) != len(users):
            print(f"bench-landing: note: {len(users) - len(ids)} duplicate ids in the data", file=sys.stderr)
        avg_raw = statistics.mean(len(u[1]) for u in users)
        avg_msg = statistics.mean(len(u[2]) for u in users)
        print(f"bench-landing: {len(users):,} users fetched and encoded in {time.perf_counter() - t0:.1f}s "
              f"(raw {avg_raw:.0f} B, message {avg_msg:.0f} B on average)", file=sys.stderr)
    finally:
        if emu:
            emu.terminate()
            emu.wait()

    warm_users, bench_users = users[:warm_n], users[warm_n:]
    db = f"landbench_{os.getpid()}_{int(started)}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    url = with_db(admin_url, db)
    cfgs = []
    result = {}
    try:
        with psycopg.connect(url, autocommit=True) as ctl:
            settings = {r[0]: r[1] for r in ctl.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                (["synchronous_commit", "fsync", "wal_level", "full_page_writes", "wal_compression",
                  "wal_sync_method", "commit_delay", "shared_buffers", "max_wal_size", "checkpoint_timeout",
                  "wal_buffers", "wal_writer_delay", "jit", "autovacuum", "temp_buffers"],)).fetchall()}
            settings["server_version"] = ctl.execute("SHOW server_version").fetchone()[0]
            my_pid = ctl.execute("SELECT pg_backend_pid()").fetchone()[0]
            postmaster = proc_ppid(my_pid)
            bg = bg_pids(postmaster)
            others = ctl.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                 "AND pid <> pg_backend_pid()").fetchone()[0]

            idx = 0
            for v in vs:
                for ps in page_sizes:
                    idx += 1
                    cfg = Config(v, ps, url, idx)
                    cfg.open()
                    cfgs.append(cfg)

            def pages_of(us, ps, first_number):
                return [Page(first_number + i, us[k:k + ps]) for i, k in enumerate(range(0, len(us), ps))]

            # Warm-up (not recorded): prepares statements, loads caches, extends files a little.
            for cfg in cfgs:
                measure(cfg, pages_of(warm_users, cfg.page_size, 1_000_000), ctl, bg, record=False)

            per_round = a.users // a.rounds
            print(f"bench-landing: {len(cfgs)} configurations x {a.rounds} rounds x {per_round:,} users "
                  f"(database {db}, synchronous_commit={settings.get('synchronous_commit')})", file=sys.stderr)
            for r in range(a.rounds):
                slice_ = bench_users[r * per_round:(r + 1) * per_round]
                round_pages = {ps: pages_of(slice_, ps, r * (per_round // ps)) for ps in page_sizes}
                shift = (r * len(cfgs) // a.rounds) % len(cfgs)  # rotate the start: A B C, B C A, ...
                order = cfgs[shift:] + cfgs[:shift]
                t_round = time.perf_counter()
                for cfg in order:
                    # fresh Page objects share nothing across configs except the users
                    pages = round_pages[cfg.page_size]
                    measure(cfg, pages, ctl, bg)
                for ps in page_sizes:
                    for p in round_pages[ps]:
                        p.drop_cache()
                print(f"bench-landing: round {r + 1}/{a.rounds} done in {time.perf_counter() - t_round:.1f}s",
                      file=sys.stderr)
            for cfg in cfgs:
                cfg.close()
            others_after = ctl.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                       "AND pid <> pg_backend_pid()").fetchone()[0]
        queries = query_check(url, cfgs)

        summary = [summarize(c) for c in cfgs]
        base_by_page = {s["page"]: s for s in summary if s["variant"] == "today"}
        for s in summary:
            b = base_by_page[s["page"]]
            s["records_per_s_ratio"] = s["records_per_s"] / b["records_per_s"]
            s["pg_cpu_ratio"] = s["pg_cpu_s_per_m"] / b["pg_cpu_s_per_m"]
            s["backend_cpu_ratio"] = s["backend_cpu_s_per_m"] / b["backend_cpu_s_per_m"]
        result = {
            "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["scripts/bench-landing"] + sys.argv[1:]),
            "users_per_variant_and_page_size": a.users, "rounds": a.rounds, "page_sizes": page_sizes,
            "avg_raw_bytes": avg_raw, "avg_message_bytes": avg_msg,
            "postgres_settings": settings,
            "other_client_backends": {"before": others, "after": others_after},
            "background_processes_measured": sorted(bg),
            "host": {"cpus": os.cpu_count(), "loadavg_end": open("/proc/loadavg").read().split()[:3],
                     "python": platform.python_version(), "psycopg": psycopg.__version__,
                     "libpq": psycopg.pq.version()},
            "elapsed_s": time.time() - started,
            "summary": summary,
            "queries": queries,
            "raw": [{"variant": c.v.name, "page": c.page_size, "rounds": c.rounds} for c in cfgs],
        }
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)
    finally:
        for cfg in cfgs:
            try:
                cfg.close()
            except Exception:  # noqa: BLE001
                pass
        if not a.keep_db:
            with psycopg.connect(admin_url, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    print_table(result)
    print(f"\nwritten to {os.path.relpath(a.out, ROOT)} ({result['elapsed_s']:.0f}s)", file=sys.stderr)


def print_table(res):
    st = res["postgres_settings"]
    print(f"Postgres {st.get('server_version')}: synchronous_commit={st.get('synchronous_commit')}, "
          f"fsync={st.get('fsync')}, wal_level={st.get('wal_level')}, "
          f"full_page_writes={st.get('full_page_writes')}; {res['users_per_variant_and_page_size']:,} users "
          f"per variant and page size, {res['rounds']} interleaved rounds, medians\n")
    print("| variant | page | records/s | PG CPU-s / 1M (backend + bg) | WAL B/rec | rec/s vs today | PG CPU vs today |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for page in res["page_sizes"]:
        for s in res["summary"]:
            if s["page"] != page:
                continue
            print(f"| {s['variant']} | {page} | {fmt_int(s['records_per_s'])} | "
                  f"{s['pg_cpu_s_per_m']:.1f} ({s['backend_cpu_s_per_m']:.1f} + {s['bg_cpu_s_per_m']:.1f}) | "
                  f"{s['wal_bytes_per_record']:,.0f} | {s['records_per_s_ratio']:.2f} | {s['pg_cpu_ratio']:.2f} |")
    others = [s["other_cores"] for s in res["summary"]]
    print(f"\nOther load on the box during the measurements (cores, median per variant): "
          f"{min(others):.2f} to {max(others):.2f}; wall figures are only as good as the box was quiet.")
    if res.get("queries"):
        print("\n| raw type | query over the view (s per 1M rows) | users_landed heap B/row | index B/row | outbox B/row |")
        print("|---|---:|---:|---:|---:|")
        for q in res["queries"]:
            print(f"| {q['raw_type']} (`{q['view_expr']}`) | {q['query_s_per_m']:.2f} | "
                  f"{q['users_landed_table_bytes_per_row']:.0f} | {q['users_landed_index_bytes_per_row']:.0f} | "
                  f"{q['outbox_bytes_per_row']:.0f} |")


if __name__ == "__main__":
    main()
