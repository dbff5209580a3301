"""Field tables of QEMU's HMP migration commands (used by :mod:`migtune.sources.hmp`)."""

from __future__ import annotations

CAPABILITY_NAMES = {
    "xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress", "events",
    "postcopy-ram", "x-postcopy-ram", "x-colo", "release-ram", "block", "return-path",
    "pause-before-switchover", "multifd", "x-multifd", "dirty-bitmaps",
    "postcopy-blocktime", "late-block-activate", "x-ignore-shared", "validate-uuid",
    "background-snapshot", "zero-copy-send", "postcopy-preempt", "switchover-ack",
    "dirty-limit", "mapped-ram",
}  # fmt: skip
_CAP_ALIASES = {"x-postcopy-ram": "postcopy-ram", "x-multifd": "multifd"}

# Other parameters QEMU prints; kept verbatim in settings.extra.
_OTHER_PARAMS = {
    "compress-level", "compress-threads", "compress-wait-thread", "decompress-threads",
    "cpu-throttle-tailslow", "tls-creds", "tls-hostname", "tls-authz", "x-checkpoint-delay",
    "block-incremental", "multifd-compression", "multifd-zlib-level", "multifd-zstd-level",
    "multifd-qatzip-level", "zero-page-detection", "x-vcpu-dirty-limit-period",
    "vcpu-dirty-limit", "mode", "direct-io", "announce-initial", "announce-max",
    "announce-rounds", "announce-step", "block-bitmap-mapping", "cpr-exec-command",
    "x-multifd-channels", "x-multifd-page-count",
}  # fmt: skip
_GLOBALS = {
    "store-global-state", "only-migratable", "send-configuration", "send-section-footer",
    "decompress-error-check", "send-switchover-start", "clear-bitmap-shift",
}  # fmt: skip

# Classic layout: label -> (Sample field, kind).  kinds: kib, ms, int, mbps, bytes, pages
_CLASSIC = {
    "total time": ("total_time", "ms"),
    "expected downtime": ("expected_downtime", "ms"),
    "downtime": ("downtime", "ms"),
    "setup": ("setup_time", "ms"),
    "transferred ram": ("transferred", "kib"),
    "throughput": ("throughput", "mbps"),
    "remaining ram": ("remaining", "kib"),
    "total ram": ("total", "kib"),
    "duplicate": ("duplicate", "int"),
    "normal": ("normal", "int"),
    "normal bytes": ("normal_bytes", "kib"),
    "dirty sync count": ("passes", "int"),
    "page size": ("page_size", "kib"),
    "multifd bytes": ("multifd_bytes", "kib"),
    "pages-per-second": ("_pps", "float"),
    "dirty pages rate": ("_dirty_pps", "float"),
    "precopy ram": ("precopy_bytes", "kib"),
    "downtime ram": ("downtime_bytes", "kib"),
    "postcopy ram": ("postcopy_bytes", "kib"),
    "postcopy request count": ("postcopy_requests", "int"),
    "cpu throttle percentage": ("throttle_pct", "float"),
    "vfio device transferred": ("vfio_bytes", "kib"),
    "transferred disk": ("disk_transferred", "kib"),
    "remaining disk": ("disk_remaining", "kib"),
    "total disk": ("disk_total", "kib"),
    "cache size": ("x:cache_size", "int"),
    "xbzrle transferred": ("x:bytes", "kib"),
    "xbzrle pages": ("x:pages", "int"),
    "xbzrle cache miss": ("x:cache_miss", "int"),
    "xbzrle cache miss rate": ("x:cache_miss_rate", "float"),
    "xbzrle encoding rate": ("x:encoding_rate", "float"),
    "xbzrle overflow": ("x:overflow", "int"),
}
# Labels that are understood but carry nothing migtune models.
_IGNORED = {
    "skipped", "zero-copy-send fallbacks happened", "dirty-limit throttle time",
    "dirty-limit ring full time", "postcopy blocktime", "postcopy vcpu blocktime",
    "socket address", "sockets", "remaining", "outgoing migration blocked",
    "postcopy latency", "postcopy vcpu latency", "compression pages", "compressed size",
    "compression busy", "compression busy rate", "compression rate", "dirty-limit throttle",
    "dirty-limit ring full", "postcopy vcpu blocktime (ms)",
}  # fmt: skip
