#!/usr/bin/env python3
"""Run the Zoho CRM simulator.

    python3 tests/zoho_sim/zoho_sim.py --port 0 --data DIR

prints ``listening on http://127.0.0.1:PORT`` once it accepts connections.
See README.md beside this file for URLs, credentials and the control API.
"""
import argparse
import json
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from zohosim import config as cfg  # noqa: E402
from zohosim import server as srv  # noqa: E402
from zohosim import ztime  # noqa: E402
from zohosim.sim import Sim  # noqa: E402

DEFAULT_DATA = os.path.normpath(os.path.join(
    HERE, "..", "..", "data", "zoho-sample"))


def default_data_dir():
    """The sample org: $ZOHO_SIM_DATA, else the bundled data/zoho-sample."""
    return os.environ.get("ZOHO_SIM_DATA") or DEFAULT_DATA


def parse_args(argv):
    """Command-line options."""
    p = argparse.ArgumentParser(description="Zoho CRM simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0,
                   help="port to listen on; 0 picks a free one")
    p.add_argument("--data", default=None,
                   help="folder with users.json, contacts.json, ...")
    p.add_argument("--clients", help="JSON file listing OAuth clients")
    p.add_argument("--config", help="JSON file of settings")
    p.add_argument("--set", action="append", default=[],
                   metavar="KEY=VALUE", help="one setting (repeatable)")
    p.add_argument("--start", help="clock start, ISO 8601 (default: now)")
    p.add_argument("--frozen", action="store_true",
                   help="the clock moves only when told")
    p.add_argument("--offset", help="org UTC offset such as +05:30 "
                   "(default: taken from the data)")
    p.add_argument("--edition", help="edition of orgs whose clients name "
                   "none (default enterprise)")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def build_config(args):
    """Merge --config, --edition and --set into a Config."""
    overrides = {}
    if args.config:
        with open(args.config, encoding="utf-8") as handle:
            overrides.update(json.load(handle))
    if args.edition:
        overrides["edition"] = cfg.edition_name(args.edition)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit("--set needs KEY=VALUE, got %r" % item)
        overrides[key.strip()] = value
    return cfg.Config(overrides)


def main(argv=None):
    """Entry point."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    clients = None
    if args.clients:
        with open(args.clients, encoding="utf-8") as handle:
            clients = json.load(handle)
    start = ztime.parse_loose(args.start) if args.start else None
    sim = Sim(args.data or default_data_dir(), build_config(args), clients,
              start, args.frozen, args.offset, args.verbose)
    server = srv.SimServer((args.host, args.port), sim)
    signal.signal(signal.SIGTERM, lambda *_: _stop(server))
    print("listening on %s" % sim.base_url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sim.watch.stop()
    return 0


def _stop(server):
    threading.Thread(target=server.shutdown, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
