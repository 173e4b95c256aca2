// Typed run records <-> flat maps, and field-by-field differences (see run_record.h).
#include "ckpt/run_record.h"

#include <google/protobuf/descriptor.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "common/check.h"

namespace driftlab::ckpt {
namespace {
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// Shortest of 15 or 17 significant digits that reads back as v ("0.05", not "0.050000000000000003").
std::string number_text(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  if (std::strtod(buf, nullptr) == v) return buf;
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// The text of field f (repeated: joined); doubles read back bit-exact.
std::string field_text(const Message& msg, const FieldDescriptor* f) {
  const auto* r = msg.GetReflection();
  auto one = [&](int i) -> std::string {
    const bool rep = f->is_repeated();
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT64: return std::to_string(rep ? r->GetRepeatedInt64(msg, f, i) : r->GetInt64(msg, f));
      case FieldDescriptor::CPPTYPE_UINT64: return std::to_string(rep ? r->GetRepeatedUInt64(msg, f, i) : r->GetUInt64(msg, f));
      case FieldDescriptor::CPPTYPE_INT32: return std::to_string(rep ? r->GetRepeatedInt32(msg, f, i) : r->GetInt32(msg, f));
      case FieldDescriptor::CPPTYPE_UINT32: return std::to_string(rep ? r->GetRepeatedUInt32(msg, f, i) : r->GetUInt32(msg, f));
      case FieldDescriptor::CPPTYPE_DOUBLE: return number_text(rep ? r->GetRepeatedDouble(msg, f, i) : r->GetDouble(msg, f));
      case FieldDescriptor::CPPTYPE_BOOL: return (rep ? r->GetRepeatedBool(msg, f, i) : r->GetBool(msg, f)) ? "true" : "false";
      case FieldDescriptor::CPPTYPE_STRING: return rep ? r->GetRepeatedString(msg, f, i) : r->GetString(msg, f);
      default: throw UserError("run record: field " + f->full_name() + " has a type the record does not use");
    }
  };
  if (!f->is_repeated()) return one(0);
  const char* sep = f->cpp_type() == FieldDescriptor::CPPTYPE_STRING ? "\n" : ",";
  std::string out;
  for (int i = 0; i < r->FieldSize(msg, f); ++i) out += (i ? sep : "") + one(i);
  return out;
}

void set_one(Message* msg, const FieldDescriptor* f, const std::string& v, const std::string& where) {
  const auto* r = msg->GetReflection();
  char* end = nullptr;
  auto bad = [&](const char* expected) {
    throw UserError(where + ": '" + v + "' is not " + expected);
  };
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_INT32: {
      const long long x = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end) bad("an integer");
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT64) rep ? r->AddInt64(msg, f, x) : r->SetInt64(msg, f, x);
      else rep ? r->AddInt32(msg, f, static_cast<int32_t>(x)) : r->SetInt32(msg, f, static_cast<int32_t>(x));
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT64:
    case FieldDescriptor::CPPTYPE_UINT32: {
      const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end || v[0] == '-') bad("a non-negative integer");
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64) rep ? r->AddUInt64(msg, f, x) : r->SetUInt64(msg, f, x);
      else rep ? r->AddUInt32(msg, f, static_cast<uint32_t>(x)) : r->SetUInt32(msg, f, static_cast<uint32_t>(x));
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      const double x = std::strtod(v.c_str(), &end);
      if (v.empty() || *end) bad("a number");
      rep ? r->AddDouble(msg, f, x) : r->SetDouble(msg, f, x);
      break;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      if (v != "true" && v != "false" && v != "1" && v != "0") bad("true or false");
      const bool x = v == "true" || v == "1";
      rep ? r->AddBool(msg, f, x) : r->SetBool(msg, f, x);
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: rep ? r->AddString(msg, f, v) : r->SetString(msg, f, v); break;
    default: throw UserError(where + ": field type not used by run records");
  }
}

}  // namespace

void fill_from_map(const KeyValues& m, const std::string& prefix, Message* msg, const std::string& what) {
  const auto* d = msg->GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) continue;
    auto it = m.find(prefix + f->name());
    if (it == m.end()) continue;
    const std::string where = what + ", key " + prefix + f->name();
    msg->GetReflection()->ClearField(msg, f);
    if (!f->is_repeated()) {
      set_one(msg, f, it->second, where);
      continue;
    }
    const char sep = f->cpp_type() == FieldDescriptor::CPPTYPE_STRING ? '\n' : ',';
    std::stringstream ss(it->second);
    for (std::string item; std::getline(ss, item, sep);)
      if (!(item.empty() && sep == ',')) set_one(msg, f, item, where);
  }
}

// False for a field with explicit presence (proto3 `optional`) that the record leaves unset: a
// record written before the field existed, which says nothing about it.
bool recorded(const Message& msg, const FieldDescriptor* f) {
  return f->is_repeated() || !f->has_presence() || msg.GetReflection()->HasField(msg, f);
}

KeyValues to_map(const Message& msg, const std::string& prefix) {
  KeyValues m;
  const auto* d = msg.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i)
    if (d->field(i)->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE && recorded(msg, d->field(i)))
      m[prefix + d->field(i)->name()] = field_text(msg, d->field(i));
  return m;
}

std::vector<std::string> field_differences(const Message& then, const Message& now, const std::string& name_prefix,
                                           const std::vector<std::string>& ignore) {
  DL_CHECK(then.GetDescriptor() == now.GetDescriptor(), "field_differences of two different message types");
  std::vector<std::string> out;
  const auto* d = then.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (std::find(ignore.begin(), ignore.end(), f->name()) != ignore.end()) continue;
    if (!recorded(then, f) || !recorded(now, f)) continue;
    const std::string a = field_text(then, f), b = field_text(now, f);
    if (a == b) continue;
    out.push_back(name_prefix + f->name() + ": '" + a + "' -> '" + b + "'");
  }
  return out;
}

proto::RunConfig typed_record(const proto::Manifest& man) {
  if (man.format_version() >= 2) return man.config();
  // Version 1: the typed records from the flag map (model keys as resolved, objective flags)
  // and the data map.
  proto::RunConfig c = man.config();
  const KeyValues flags(man.config().flags().begin(), man.config().flags().end());
  const KeyValues data(man.config().dataset().begin(), man.config().dataset().end());
  const std::string what = "checkpoint record (format version 1)";
  fill_from_map(flags, "gen_", c.mutable_generator(), what);
  fill_from_map(flags, "enc_", c.mutable_encoder(), what);
  if (auto it = flags.find("encoder"); it != flags.end()) {
    // Version 1 kept the --encoder request instead of the resolved kind and path.
    c.mutable_encoder()->set_path(it->second == "identity" || it->second == "resnet" ? "" : it->second);
    if (it->second == "identity" || it->second == "resnet") c.mutable_encoder()->set_kind(it->second);
  }
  fill_from_map(flags, "", c.mutable_objective(), what);
  fill_from_map(data, "", c.mutable_data_spec(), what);
  return c;
}

KeyValues flat_record(const proto::RunConfig& c) {
  KeyValues m(c.flags().begin(), c.flags().end());
  for (const auto& [k, v] : to_map(c.generator(), "gen_")) m[k] = v;
  for (const auto& [k, v] : to_map(c.encoder(), "enc_"))
    if (k != "enc_kind" && k != "enc_path") m[k] = v;
  for (const auto& [k, v] : to_map(c.objective(), "")) m[k] = v;
  if (!c.precision().empty()) m["precision"] = c.precision();
  return m;
}

RecordMaps record_maps(const proto::Manifest& man) {
  const proto::RunConfig c = typed_record(man);
  RecordMaps r;
  r.generator = to_map(c.generator(), "gen_");
  r.encoder = to_map(c.encoder(), "enc_");
  r.objective = to_map(c.objective(), "");
  r.dataset = to_map(c.data_spec(), "");
  return r;
}

}  // namespace driftlab::ckpt
