"""What `shadowline demo` prints: the banner with its commands in the README tour's order, and
the lines that keep it true after a failover (who is master now, its URL, the new kill line)."""

from __future__ import annotations

from typing import Protocol


class Node(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def pid(self) -> int | None: ...


def port_note(wanted: int, got: int, what: str) -> str | None:
    """A line saying that `wanted` was busy, or None."""
    if wanted == got:
        return None
    return f"port {wanted} is busy: {what} uses {got} instead (choose another with --port)"


def kill_line(master: Node) -> str:
    return f"kill -9 {master.pid or '<pid>'}"


def curl_lines(master: Node, password: str, watchdog_url: str) -> list[str]:
    """The master's /ha and /metrics, asked with curl: the master of now, after a failover."""
    return [
        f"curl -u admin:{password} {master.url}/ha",
        f"curl -u admin:{password} {master.url}/metrics    # Prometheus; the watchdog's: "
        f"{watchdog_url}/metrics",
    ]


def banner(
    *,
    cluster: str,
    log_dir: str,
    master: Node,
    shadow: Node,
    watchdog_url: str,
    password: str,
    position: int,
) -> str:
    curls = "\n  ".join(curl_lines(master, password, watchdog_url))
    return f"""
shadowline demo is running: cluster {cluster}, logs in {log_dir}/

  master    {master.url}   {master.name}, position {position}
  shadow    {shadow.url}   {shadow.name}, confirmed, in sync, read-only
  watchdog  {watchdog_url}   promotes the shadow 2 s after the master's heartbeats stop

  user admin, password {password} (on both: users are local to each instance)

The High Availability screens: {master.url}/ and {shadow.url}/ (log in as admin)

Try, in the README tour's order:
  export SHADOWLINE_URL={master.url},{shadow.url} SHADOWLINE_USER=admin SHADOWLINE_PASSWORD={password}
  shadowline watch --cluster {cluster}                  # in another terminal: the monitoring stream
  shadowline ha status
  shadowline config put system-mapping crm '{{"virtual_host": "crm", "virtual_port": 443, "internal_host": "crm01", "internal_port": 8443, "protocol": "HTTPS"}}'
  shadowline config list --prefer shadow           # the shadow has it too
  shadowline ha verify --url {shadow.url}          # chain and state digest agree
  {kill_line(master)}   # the master dies: watch the failover on both screens (SHADOWLINE_URL follows the new master)
  shadowline history
  shadowline config list --at 2
  shadowline config diff --from 2
  shadowline history export --format csv -o history.csv
  shadowline ha switch-roles                       # on the master of now: planned handover, nothing lost
  {curls}

Press Ctrl-C to stop. `shadowline demo --clean --cluster {cluster}` removes everything it made."""


def new_master(
    master: Node, shadow: Node | None, epoch: int, password: str, watchdog_url: str
) -> str:
    """Said when the master changed: the printed kill and curl lines are stale now. The
    exported SHADOWLINE_URL names both instances, so it still holds; the line is printed again
    with the master of now first, for a terminal opened after the failover."""
    urls = master.url if shadow is None else f"{master.url},{shadow.url}"
    lines = [
        f"now master: {master.name} at {master.url} (epoch {epoch})",
        f"  export SHADOWLINE_URL={urls} SHADOWLINE_USER=admin SHADOWLINE_PASSWORD={password}",
        f"  {kill_line(master)}   # to kill the master of now",
        *(f"  {line}" for line in curl_lines(master, password, watchdog_url)),
    ]
    if shadow is not None:
        lines.insert(1, f"  shadow: {shadow.name} at {shadow.url}")
    return "\n".join(lines)
