// The typed run record of a checkpoint (proto/checkpoint.proto: GeneratorSpec, EncoderSpec,
// ObjectiveSpec, DataSpec in RunConfig) and the flat key -> value maps the rest of the code
// speaks (models::GeneratorConfig::to_map, data::spec_to_map, the trainer's objective flags).
// Conversions go field by field through protobuf reflection, with the field named by the map
// key minus a prefix ("gen_width" <-> GeneratorSpec.width with prefix "gen_"), so one rule
// covers every record and a new field needs only its proto line and its map key.
//
// Format versions: 2 stores the typed records; 1 (older) stored only the flag map
// (RunConfig.flags) and the data map (RunConfig.dataset). record_maps() reads both.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <google/protobuf/message.h>

#include "checkpoint.pb.h"

namespace driftlab::ckpt {

using KeyValues = std::map<std::string, std::string>;

// Sets every field of `msg` from m[prefix + field name]: integers, doubles and bools from their
// text, repeated numbers from comma-separated lists, repeated strings from newline-separated
// text. Absent keys leave the field at its default. UserError naming `what` and the key on a
// malformed value.
void fill_from_map(const KeyValues& m, const std::string& prefix, google::protobuf::Message* msg, const std::string& what);
// The inverse: prefix + field name -> text, for every field (doubles with 17 significant digits)
// but an unset one with explicit presence (proto3 `optional`: a record from before it existed).
KeyValues to_map(const google::protobuf::Message& msg, const std::string& prefix);
// One "NAME: 'then' -> 'now'" line per field that differs (NAME = name_prefix + field name;
// numbers in their shortest exact text, e.g. "0.05,0.2"), fields named in `ignore` and optional
// fields unset in either record left out.
std::vector<std::string> field_differences(const google::protobuf::Message& then, const google::protobuf::Message& now,
                                           const std::string& name_prefix, const std::vector<std::string>& ignore = {});

// The record flattened to one key per field, the keys being flag names: the flags as given, then
// the typed generator ("gen_" + field), encoder ("enc_" + field, but kind and path, which the
// --encoder flag already names) and objective fields over them. What resume compares and what
// drift_ckpt inspect prints.
KeyValues flat_record(const proto::RunConfig& record);

// The record of a manifest as maps: generator ("gen_*" keys), encoder ("enc_*"), objective
// (flag names) and data set (data::spec_to_map keys), whatever its format version.
struct RecordMaps {
  KeyValues generator, encoder, objective, dataset;
};
RecordMaps record_maps(const proto::Manifest& manifest);
// The typed records of a version-1 manifest (built from its flag and data maps), or those stored.
proto::RunConfig typed_record(const proto::Manifest& manifest);

}  // namespace driftlab::ckpt
