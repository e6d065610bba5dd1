#!/usr/bin/env bash
# A short check of the CUDA paths on a machine with a GPU, and the translation quality that the
# GPU config reaches in a fixed time.
#
#   bash benchmarks/gpu_check.sh [MINUTES] [OUTPUT_DIR]
#
# Needs the prepared Multi30k and tiny-shakespeare data under data/ (see data_scripts/).
# It runs the CUDA tests, a one-minute bf16 smoke run of the text-generation GPU config, and
# trains the translation GPU config for MINUTES (default 5) before scoring the test split
# with beam 5 and greedy search. Each step's whole output goes to OUTPUT_DIR/<step>.log
# (default runs/gpu_check); the end of it is printed.
set -uo pipefail
# `python -m seq2seq` imports the package from this checkout, installed or not.
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
minutes=${1:-5}
out=${2:-runs/gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

# step NAME LINES COMMAND...: run COMMAND, keep its output in $out/NAME.log, print its last LINES lines.
step() {
    local name=$1 lines=$2
    shift 2
    echo "== $name"
    "$@" >"$out/$name.log" 2>&1
    local status=$?
    tr '\r' '\n' <"$out/$name.log" | grep -v "it/s]\|step/s]\|s/step]" | tail -n "$lines"
    [ $status -eq 0 ] || echo "!! $name failed with exit status $status"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
step cuda_tests 3 $python -m pytest -q -x -p no:cacheprovider tests/test_cuda_training_step.py tests/test_output_loss.py tests/test_attention.py \
    tests/test_checkpoint.py tests/test_decoder.py tests/test_beam.py
step textgen_train 6 $python -m seq2seq textgen train --config shakespeare_char_gpu \
    --run-dir "$out/textgen" --fresh --set train.max_minutes=1 --set train.validate_every=200
step textgen_generate 8 $python -m seq2seq textgen generate --checkpoint "$out/textgen" --prime "ROMEO:" \
    --length 200 --seed 1 --device cpu
step translate_train 14 $python -m seq2seq translate train --config multi30k_de_en_gpu \
    --run-dir "$out/translate" --fresh --set train.max_minutes="$minutes"
step evaluate_beam5 6 $python -m seq2seq translate evaluate --checkpoint "$out/translate" --split test --beam 5
step evaluate_greedy 6 $python -m seq2seq translate evaluate --checkpoint "$out/translate" --split test --greedy
echo "Ein Mann fährt Fahrrad." >"$out/sentence.de"
step translate_on_cpu 2 $python -m seq2seq translate translate --checkpoint "$out/translate" --device cpu \
    --input "$out/sentence.de"
