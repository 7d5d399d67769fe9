"""Bring your own data: turn the traffic data people already have into a TrafficDataset.

Four layouts are read:

* `import_generic`: the generic folder (`read_folder`'s format), also with `speed.parquet` for
  `speed.csv` and an `adjacency.csv` matrix for `edges.csv`;
* `import_matrix`: matrix-style benchmarks of the T-GCN era (SZ-taxi, Los-loop), a speed CSV
  without timestamps and a headerless N×N adjacency CSV;
* `import_metr_la`: METR-LA / PEMS-BAY as DCRNN distributes them, an HDF5 speed table and
  `adj_mx.pkl`;
* `import_snapshots`: the predecessor project's collection folders of irregular `run_*` snapshots.

Importers only read: saving is `write_folder` (atomic). Each returns the dataset with notes in
plain words for the user (unit conversions and guesses, a missing map, dropped nodes, gridding),
and every malformed input raises one DataError naming the file and the problem. Pickles are
read with an allow-list unpickler, since loading an untrusted pickle can otherwise run any code.
"""

from stmgt.data.importers.benchmarks import import_matrix, import_metr_la
from stmgt.data.importers.common import ImportResult, guess_units, validation_report
from stmgt.data.importers.generic import import_generic
from stmgt.data.importers.snapshots import import_snapshots

__all__ = ["ImportResult", "guess_units", "import_generic", "import_matrix", "import_metr_la",
           "import_snapshots", "validation_report"]
