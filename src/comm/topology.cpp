// init_topology (see topology.h): MPI start-up, rank discovery, launcher sanity checks.
#include "comm/topology.h"

#include <torch/torch.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "common/check.h"
#include "common/logging.h"

namespace driftlab::comm {
namespace {

std::unique_ptr<Topology> g_topology;

// Launcher variables are read only through this helper, only in this file.
const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && v[0] != '\0') ? v : nullptr;
}

long env_int(const char* name, long fallback) {
  const char* v = env(name);
  if (v == nullptr) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  return (end != v && *end == '\0') ? x : fallback;
}

bool launched_by_mpi_runtime() {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_RANK") || env("PMI_SIZE");
}

// srun's task count for this job step; 0 when not inside an srun step. SLURM_NTASKS alone is not
// enough: a batch script inside an allocation of N tasks sees it too, while running one process.
long slurm_step_tasks() { return env("SLURM_STEP_ID") ? env_int("SLURM_STEP_NUM_TASKS", 0) : 0; }

// Before MPI_Init: an srun step of several tasks without a PMI/PMIx wire-up makes every task an
// MPI singleton (or fails inside MPI_Init with a message that does not say why); stop with the fix.
void check_launcher_before_init() {
  long tasks = slurm_step_tasks();
  DL_REQUIRE(tasks <= 1 || launched_by_mpi_runtime(),
             "srun started " << tasks << " tasks (SLURM_STEP_NUM_TASKS=" << tasks
             << ") but none of them has an MPI wire-up (no PMIX_RANK / PMI_RANK / OMPI_COMM_WORLD_SIZE "
                "in the environment), so each would run alone as a world of 1. Launch with "
                "`srun --mpi=pmix ...` (`srun --mpi=list` shows the plugins), or run `mpirun` inside "
                "the allocation");
}

// After MPI_Init: the launcher's idea of the world must match MPI's.
void check_launcher_after_init(int world) {
  long ompi_world = env_int("OMPI_COMM_WORLD_SIZE", 0);
  DL_REQUIRE(ompi_world == 0 || ompi_world == world,
             "mpirun started " << ompi_world << " ranks (OMPI_COMM_WORLD_SIZE) but MPI reports a world of "
             << world << ": this binary is linked against a different MPI library than the `mpirun` "
                "that launched it; use the mpirun of the MPI the project was built with");
  long tasks = slurm_step_tasks();
  DL_REQUIRE(tasks <= 1 || world > 1 || env("OMPI_COMM_WORLD_SIZE"),
             "srun started " << tasks << " tasks but MPI sees a world of 1 in each: the MPI/PMIx wire-up "
                "failed; launch with `srun --mpi=pmix ...` or run `mpirun` inside the allocation");
}

std::string launcher_name() {
  if (env("OMPI_COMM_WORLD_SIZE")) return env("SLURM_JOB_ID") ? "mpirun (in Slurm job)" : "mpirun";
  if (env("PMIX_RANK")) return env("SLURM_STEP_ID") ? "srun (pmix)" : "pmix";
  if (env("PMI_RANK")) return env("SLURM_STEP_ID") ? "srun (pmi2)" : "pmi";
  return "none";
}

void finalize_at_exit() { finalize_topology(); }

}  // namespace

const Topology& init_topology() {
  if (g_topology) return *g_topology;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    check_launcher_before_init();
    int provided = 0;
    // Errors inside MPI_Init_thread itself go to MPI's default handler (abort with its message).
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    DL_REQUIRE(provided >= MPI_THREAD_FUNNELED,
               "the MPI library provides thread level " << provided << ", expected at least MPI_THREAD_FUNNELED");
    std::atexit(finalize_at_exit);
  }
  // From here on, MPI errors come back as codes so DL_CHECK_MPI can name the call and the rank.
  DL_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  auto t = std::make_unique<Topology>();
  DL_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &t->world));
  DL_CHECK_MPI(MPI_Comm_set_errhandler(t->world, MPI_ERRORS_RETURN));
  DL_CHECK_MPI(MPI_Comm_rank(t->world, &t->rank));
  DL_CHECK_MPI(MPI_Comm_size(t->world, &t->world_size));
  set_process_identity(t->rank, t->world_size);
  check_launcher_after_init(t->world_size);

  // Ranks that can share memory are the ranks of one node; the key keeps world order inside it.
  DL_CHECK_MPI(MPI_Comm_split_type(t->world, MPI_COMM_TYPE_SHARED, t->rank, MPI_INFO_NULL, &t->node));
  DL_CHECK_MPI(MPI_Comm_set_errhandler(t->node, MPI_ERRORS_RETURN));
  DL_CHECK_MPI(MPI_Comm_rank(t->node, &t->local_rank));
  DL_CHECK_MPI(MPI_Comm_size(t->node, &t->local_world_size));
  int leader = t->local_rank == 0 ? 1 : 0;
  DL_CHECK_MPI(MPI_Allreduce(&leader, &t->node_count, 1, MPI_INT, MPI_SUM, t->world));
  t->launcher = launcher_name();

  if (!std::getenv("OMP_NUM_THREADS")) {
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    torch::set_num_threads(std::max(1, cores / std::max(1, t->local_world_size)));
  }
  init_logging("driftlab", t->rank, t->world_size);
  VLOG(1) << "topology: rank " << t->rank << "/" << t->world_size << ", local " << t->local_rank << "/"
          << t->local_world_size << ", nodes " << t->node_count << ", launcher " << t->launcher;
  g_topology = std::move(t);
  return *g_topology;
}

const Topology& topology() {
  DL_REQUIRE(g_topology, "comm::topology() called before comm::init_topology()");
  return *g_topology;
}

void finalize_topology() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  if (g_topology) {
    if (g_topology->node != MPI_COMM_NULL) MPI_Comm_free(&g_topology->node);
    if (g_topology->world != MPI_COMM_NULL) MPI_Comm_free(&g_topology->world);
  }
  MPI_Finalize();
}

}  // namespace driftlab::comm
