// The precompiled header shared by every project target (see driftlab_target in CMakeLists.txt).
#pragma once
#include <torch/torch.h>
#include <glog/logging.h>
#include <gflags/gflags.h>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>
