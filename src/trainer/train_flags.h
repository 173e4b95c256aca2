// drift_train's command-line flags (every --help entry of the tool) -> TrainConfig.
#pragma once

#include "trainer/config.h"

namespace driftlab {

// Reads every flag once. Malformed lists (--taus, --drift_path) are UserErrors naming the flag;
// the rest is checked by validate(config, world) when the world is known.
TrainConfig train_config_from_flags();

}  // namespace driftlab
