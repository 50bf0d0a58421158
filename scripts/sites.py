"""The multi-site form of a twinlattice wadm manifest (stdin → stdout), for
`scripts/lattice.sh manifest --sites a,b`. Hosts carry the label `site=<x>`.

- Every component's spreadscaler spreads its instances evenly over the
  sites (wadm places each site's share on that site's hosts).
- The providers that every site needs run once on each host of each site
  (a daemonscaler per site): the state provider (all on the one JetStream)
  and the bridges. The bridges' CoAP inbox gets one address per site (each
  provider binds the first free one, so sites may share a machine) and, with
  --mqtt HOST:PORT, they all bridge that one MQTT broker with a shared
  subscription (each inbox message is taken once, by one site).
- The HTTP ingress (the builtin http-server, which calls components on its
  own host only) becomes one provider per site, `httpserver-<x>`, whose
  addresses are the single-site ones shifted by 10 per site (9021, 9031, …).
- The manifest version gets the suffix `-sites-a-b`.

Usage: python sites.py a,b --mqtt HOST:PORT < manifest > manifest
"""

from __future__ import annotations

import argparse
import copy
import re
import sys

import yaml

PORT_STEP = 10
ADDRESS = re.compile(r"^(?P<host>[^:,]+):(?P<port>\d+)$")


def shifted(address: str, index: int) -> str:
    m = ADDRESS.match(address)
    if not m:
        raise SystemExit(f"not HOST:PORT: {address!r}")
    return f"{m['host']}:{int(m['port']) + PORT_STEP * index}"


def spread(sites: list[str]) -> list[dict]:
    return [{"name": f"site-{s}", "requirements": {"site": s}, "weight": 1} for s in sites]


def per_site_daemon(sites: list[str]) -> dict:
    return {"type": "daemonscaler", "properties": {"instances": 1, "spread": spread(sites)}}


def transform(app: dict, sites: list[str], mqtt: str) -> dict:
    spec = app["spec"]
    out = []
    for c in spec["components"]:
        traits = c.setdefault("traits", [])
        if c["type"] == "component":
            for t in traits:
                if t["type"] == "spreadscaler":
                    t["properties"]["spread"] = spread(sites)
            out.append(c)
        elif c["name"] == "httpserver":
            for i, s in enumerate(sites):
                site = copy.deepcopy(c)
                site["name"] = f"httpserver-{s}"
                for t in site["traits"]:
                    if t["type"] != "link":
                        continue
                    t["properties"]["name"] = f"{t['properties'].get('name', 'default')}-{s}"
                    for conf in t["properties"].get("source_config", []):
                        conf["name"] = f"{conf['name']}-{s}"
                        props = conf["properties"]
                        if "address" in props:
                            props["address"] = shifted(props["address"], i)
                site["traits"] = [t for t in site["traits"] if t["type"] != "spreadscaler"]
                site["traits"].append(per_site_daemon([s]))
                out.append(site)
        else:
            c["traits"] = [t for t in traits if t["type"] not in ("spreadscaler", "daemonscaler")]
            c["traits"].append(per_site_daemon(sites))
            if c["name"] == "bridges":
                for conf in c["properties"].get("config", []):
                    props = conf["properties"]
                    if "coap_address" in props:
                        first = props["coap_address"].split(",")[0].strip()
                        props["coap_address"] = ",".join(shifted(first, i) for i in range(len(sites)))
                    host, _, port = mqtt.rpartition(":")
                    props.pop("mqtt_embedded_address", None)
                    props["mqtt_host"], props["mqtt_port"] = host, port
                    props["mqtt_share_group"] = "twinlattice"
            out.append(c)
    spec["components"] = out
    annotations = app["metadata"].setdefault("annotations", {})
    annotations["version"] = f"{annotations.get('version', 'v0')}-sites-{'-'.join(sites)}"
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sites", help="comma-separated site labels, e.g. a,b")
    parser.add_argument("--mqtt", required=True,
                        help="HOST:PORT of the MQTT broker all sites' bridges share (one embedded broker per "
                             "site would split the AAS: a delivery published on one site's broker misses "
                             "the subscribers of the other's)")
    args = parser.parse_args()
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    if len(sites) < 2 or any(not re.fullmatch(r"[A-Za-z0-9_-]+", s) for s in sites):
        raise SystemExit("give two or more site labels of [A-Za-z0-9_-], e.g. a,b")
    app = yaml.safe_load(sys.stdin)
    yaml.safe_dump(transform(app, sites, args.mqtt), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
