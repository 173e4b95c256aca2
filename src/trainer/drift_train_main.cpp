// drift_train: distributed drifting training. Launch as a plain process, or under mpirun / srun.
#include "common/tool_main.h"
#include "trainer/train_flags.h"
#include "trainer/trainer.h"

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
      "drift_train: train a one-step generator with the drifting objective.\n"
      "Usage:\n"
      "  drift_train --data=DATASET_DIR --run_dir=runs/NAME [flags]\n"
      "  mpirun -np 4 drift_train --flagfile=configs/toy2d.flags\n"
      "  srun --mpi=pmix -n 8 drift_train --flagfile=configs/mnist.flags --resume=auto\n"
      "Writes RUN_DIR/checkpoints/step_*/ (sharded, manifest last), metrics.jsonl, TensorBoard events and\n"
      "samples*.png. SIGTERM / SIGUSR1 commit a checkpoint and exit 0 (resume with --resume=auto).",
      [] { return driftlab::run_training(driftlab::train_config_from_flags()); });
}
