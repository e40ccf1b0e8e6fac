"""polars' allocator setting, made before polars is first imported (it is read then).

One jemalloc arena for polars: several worker threads otherwise spread freed memory
over up to 8 arenas, each keeping it for 10 s -- more peak RSS (a 1M-row Parquet dry
run: 220 MB with jemalloc's defaults, 194-197 MB with one; ``benchmarks/parquet.py``,
and ``benchmarks/bench.py --only dry-run`` for a CSV). Every way into polars (the columnar
package, the Parquet and spreadsheet readers) imports this first; a value the user has
set wins.
"""

from __future__ import annotations

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1")
