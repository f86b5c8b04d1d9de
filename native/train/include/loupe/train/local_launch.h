// `loupe train --nproc N`: N ranks of a distributed run on this machine, started the way torchrun
// starts them: the same program and arguments with RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR (127.0.0.1) and MASTER_PORT (MASTER_PORT if set, else a free
// port) in their environment.
//
// Each rank runs in its own process group, so a Ctrl-C at the terminal reaches the launcher
// alone, which passes exactly one SIGINT to every rank per Ctrl-C (the first stops them at the
// next step, checkpointed; a second one kills, as with one process). The launcher waits for all
// of them and names every rank that failed: its exit code or the signal that killed it. Once one
// rank has failed, the others get `grace_seconds` to stop by themselves (they notice a lost rank
// within the distributed timeout) before they are terminated.
#pragma once

#include <string>
#include <vector>

namespace loupe::train {

// Runs `arguments` (this program's arguments, without the program) as `nproc` local ranks;
// `name` ("loupe train") starts the launcher's lines. Returns 0 when every rank succeeded, else 1
// (a rank failed) or 130 (killed by Ctrl-C). Throws Error when it cannot start them (WORLD_SIZE
// already set, no program path, a failed spawn).
int launch_local_ranks(const std::string& name, int nproc, const std::vector<std::string>& arguments, int grace_seconds);

// In a rank started by launch_local_ranks: dies with the launcher (SIGTERM when it goes away).
void stop_with_local_launcher();

}  // namespace loupe::train
