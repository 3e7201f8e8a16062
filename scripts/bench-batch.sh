#!/usr/bin/env bash
# Rows/s of `podium batch` against a plain Python onnxruntime loop over the
# same file, in one run (BENCHMARKS.md, "Batch scoring"). Builds Podium in
# release mode; needs .venv-test (scripts/test.sh makes it).
#   scripts/bench-batch.sh [ROWS]   (default 1000000 rows of fraud features)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
./scripts/setup-ort.sh
cargo build --release --bin podium
podium="$(cargo metadata --format-version 1 --no-deps | .venv-test/bin/python -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/podium"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$podium" --registry "$work/registry" models register fraud models/fraud/v1.onnx >/dev/null
"$podium" --registry "$work/registry" alias set fraud champion 1
.venv-test/bin/python - "$work/in.parquet" "$rows" <<'PY'
import sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
path, rows = sys.argv[1], int(sys.argv[2])
X = np.random.default_rng(0).normal(size=(rows, 30)).astype(np.float32)
values = pa.array(X.reshape(-1), type=pa.float32())
pq.write_table(pa.table({"input": pa.FixedSizeListArray.from_arrays(values, 30)}), path, row_group_size=65536)
PY
start=$(date +%s.%N)
"$podium" --registry "$work/registry" batch fraud --input "$work/in.parquet" --output "$work/out.parquet" 2>&1 | tail -1
end=$(date +%s.%N)
echo "podium batch (whole command, $(nproc) threads): $(.venv-test/bin/python -c "print(round($rows / ($end - $start)))") rows/s"
# The plain Python loop: read row groups, run onnxruntime (default session
# options), write input + outputs with pyarrow.
.venv-test/bin/python - "$work/in.parquet" "$work/py.parquet" <<'PY'
import sys, time
import numpy as np, onnxruntime as ort, pyarrow as pa, pyarrow.parquet as pq
src, dst = sys.argv[1], sys.argv[2]
start = time.perf_counter()
sess = ort.InferenceSession("models/fraud/v1.onnx", providers=["CPUExecutionProvider"])
reader = pq.ParquetFile(src)
writer, rows = None, 0
for i in range(reader.num_row_groups):
    t = reader.read_row_group(i)
    X = np.stack(t.column("input").to_numpy(zero_copy_only=False)).astype(np.float32)
    label, proba = sess.run(["label", "probabilities"], {"input": X})
    p = pa.FixedSizeListArray.from_arrays(pa.array(proba.reshape(-1)), 2)
    out = t.append_column("label", pa.array(label)).append_column("probabilities", p)
    writer = writer or pq.ParquetWriter(dst, out.schema)
    writer.write_table(out)
    rows += len(X)
writer.close()
print(f"python onnxruntime loop (whole script): {round(rows / (time.perf_counter() - start))} rows/s")
PY
