// Command-line flags that describe the generator (--gen_*) and the feature encoder (--encoder,
// --enc_*), for drift_train. Linking this file's object defines the flags; binaries that never
// call these functions (the sampler) do not get them and rebuild models from stored maps instead.
//
// Presets: --gen_preset=B/2 fills the dit sizes; any --gen_* flag given explicitly overrides it.
// The data set supplies what the flags usually leave unset: call with its sample shape and class
// count, which are used unless --gen_sample_shape / --gen_num_classes are given.
// Both functions then set the flags to the resolved values, so the run's flag snapshot
// (project_flag_values) rebuilds the same model through GeneratorConfig::from_map.
#pragma once

#include <cstdint>
#include <vector>

#include "models/config.h"

namespace driftlab::models {

GeneratorConfig generator_config_from_flags(const std::vector<int64_t>& data_sample_shape, int64_t data_num_classes);

// --encoder=identity | resnet (random init, sizes from --enc_*) | <file> (a drift_encoder file or
// a TorchScript module; which one is read from the file). --enc_in_channels defaults to the data
// set's channel count passed here.
EncoderConfig encoder_config_from_flags(int64_t data_channels);

}  // namespace driftlab::models
