// Process topology: who this process is among the ranks of a run (rank, world, local rank).
//
// This is the ONE place that initialises MPI and reads launcher environment variables
// (OpenMPI's OMPI_COMM_WORLD_*, PMIx's PMIX_*, Slurm's SLURM_*). Everything else asks topology().
// A plain `./binary` goes through the same code: MPI starts as a singleton and the result is
// rank 0 of a world of 1, so training code never branches on "distributed or not".
// It does not hold collectives: those live behind Communicator (communicator.h).
#pragma once

#include <mpi.h>

#include <string>

namespace driftlab::comm {

struct Topology {
  int rank = 0;              // position in the world, 0 .. world_size-1
  int world_size = 1;
  int local_rank = 0;        // position among the ranks sharing this node (picks the GPU)
  int local_world_size = 1;  // ranks on this node
  int node_count = 1;        // nodes in the run (ranks with local_rank 0)
  std::string launcher;      // how the ranks were started, for logs: "mpirun", "srun (pmix)", "none"
  MPI_Comm world = MPI_COMM_NULL;  // duplicate of MPI_COMM_WORLD, errors returned (not fatal)
  MPI_Comm node = MPI_COMM_NULL;   // the ranks sharing memory with this one
};

// Starts MPI (MPI_THREAD_FUNNELED: only the thread that called this runs collectives),
// determines the topology, sets the rank shown in error messages and log lines, and registers
// MPI_Finalize at exit. Idempotent: later calls return the same object.
// Fails with a UserError carrying a hint when the launcher and MPI disagree, e.g. `srun` without
// `--mpi=pmix` (Slurm started N tasks but each one sees an MPI world of 1).
// When OMP_NUM_THREADS is unset, LibTorch's intra-op threads are set to the node's cores divided
// by the ranks on the node, so co-located ranks do not oversubscribe the CPUs.
const Topology& init_topology();

// The topology set up by init_topology(); a UserError if it has not run yet.
const Topology& topology();

// Finalizes MPI now (idempotent; also runs at exit). No collective may run afterwards.
void finalize_topology();

}  // namespace driftlab::comm
