"""What the warm tier's ClickHouse can do, declared once by the resource that connects to it.

The embedded default (chDB) and a ClickHouse server differ in a few things the rest of the
code must know: whether ClickHouse runs on this machine and so reads the local cold tier
(`icebergLocal`), whether cold-assets or the server's operator makes the S3 named
collection, whether only one process at a time may open it, and whether the ten tables can
offload in parallel. `ClickHouseResource` decides that from Settings (a host, or none) and
declares it for every client it opens; code that holds a client asks `capabilities_of`.
"""

from dataclasses import dataclass
from weakref import WeakKeyDictionary

from clickhouse_connect.driver.client import Client


@dataclass(frozen=True)
class WarmCapabilities:
    embedded: bool  # chDB in this process, under COLD_HOME

    @property
    def reads_local_files(self) -> bool:
        """ClickHouse runs here and reads this machine's files (a file:// warehouse)."""
        return self.embedded

    @property
    def makes_its_s3_collection(self) -> bool:
        """cold-assets creates the S3 named collection (a server's operator does otherwise)."""
        return self.embedded

    @property
    def one_process_at_a_time(self) -> bool:
        """chDB's files are opened by one process at a time (embedded_lock.py)."""
        return self.embedded

    @property
    def runs_tables_in_parallel(self) -> bool:
        """Runs may offload the ten tables at once (a server takes many connections)."""
        return not self.embedded


SERVER = WarmCapabilities(embedded=False)
EMBEDDED = WarmCapabilities(embedded=True)
_DECLARED: WeakKeyDictionary[Client, WarmCapabilities] = WeakKeyDictionary()


def declare(client: Client, capabilities: WarmCapabilities) -> Client:
    _DECLARED[client] = capabilities
    return client


def capabilities_of(client: Client) -> WarmCapabilities:
    """What `client`'s ClickHouse can do; a client no resource declared is taken for a server,
    the side that assumes least (it reads no local file, makes no collection)."""
    return _DECLARED.get(client, SERVER)
