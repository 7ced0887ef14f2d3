#include "server/metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "server/metrics/text_format.h"

namespace mamba::metrics {
namespace {

// Adds `amount` to an atomic double. std::atomic<double>::fetch_add compiles to this same loop;
// spelling it out keeps the memory order explicit.
void AtomicAdd(std::atomic<double>& target, double amount) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + amount, std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
  }
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string AsString(std::string_view s) { return std::string(s); }

// The series names a metric occupies in an exposition.
std::vector<std::string> SeriesNames(std::string_view name, MetricType type) {
  if (type != MetricType::kHistogram) return {AsString(name)};
  const std::string base(name);
  return {base, base + "_bucket", base + "_sum", base + "_count"};
}

void AppendSample(std::string_view name, std::string_view suffix, std::string_view labels,
                  std::string_view extra_label, double value, std::string* out) {
  out->append(name);
  out->append(suffix);
  if (!labels.empty() || !extra_label.empty()) {
    out->push_back('{');
    out->append(labels);
    if (!labels.empty() && !extra_label.empty()) out->push_back(',');
    out->append(extra_label);
    out->push_back('}');
  }
  out->push_back(' ');
  AppendSampleValue(value, out);
  out->push_back('\n');
}

void AppendSeries(const std::string& name, const std::string& labels, const Counter& c,
                  const std::vector<std::string>& /*le_text*/, std::string* out) {
  AppendSample(name, "", labels, "", c.Value(), out);
}

void AppendSeries(const std::string& name, const std::string& labels, const Gauge& g,
                  const std::vector<std::string>& /*le_text*/, std::string* out) {
  AppendSample(name, "", labels, "", g.Value(), out);
}

void AppendSeries(const std::string& name, const std::string& labels, const Histogram& h,
                  const std::vector<std::string>& le_text, std::string* out) {
  const Histogram::Snapshot snap = h.Read();
  for (size_t i = 0; i < snap.cumulative.size(); ++i) {
    AppendSample(name, "_bucket", labels, le_text[i], static_cast<double>(snap.cumulative[i]), out);
  }
  AppendSample(name, "_sum", labels, "", snap.sum, out);
  AppendSample(name, "_count", labels, "", static_cast<double>(snap.count), out);
}

// A metric whose single value is computed at scrape time.
class CallbackFamily final : public MetricFamily {
 public:
  CallbackFamily(std::string name, std::string help, MetricType type,
                 std::function<std::optional<double>()> read)
      : MetricFamily(std::move(name), std::move(help), type, {}), read_(std::move(read)) {}

  void AppendTo(std::string* out) const override {
    AppendHeader(out);
    if (std::optional<double> v = read_(); v.has_value()) {
      AppendSample(name(), "", "", "", *v, out);
    }
  }

 private:
  const std::function<std::optional<double>()> read_;
};

}  // namespace

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// ---------------------------------------------------------------------------------------------
// Counter, Gauge, Histogram

void Counter::IncrementBy(double amount) {
  if (!(amount > 0)) return;  // also rejects NaN
  AtomicAdd(fraction_, amount);
}

double Counter::Value() const {
  return static_cast<double>(whole_.load(std::memory_order_relaxed)) +
         fraction_.load(std::memory_order_relaxed);
}

void Gauge::Add(double delta) { AtomicAdd(value_, delta); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  // First bound >= value; past the end means the +Inf bucket.
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, value);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

absl::Status ValidateBucketBounds(absl::Span<const double> bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram bucket bound ", i, " is ", FormatSampleValue(bounds[i]),
                       ": bounds must be finite (the +Inf bucket is implicit)"));
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "histogram bucket bounds must be strictly increasing, but bound ", i, " (",
          FormatSampleValue(bounds[i]), ") follows ", FormatSampleValue(bounds[i - 1])));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !std::isfinite(start) || !(factor > 1) || !std::isfinite(factor) ||
      count < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "exponential buckets need start > 0, factor > 1 and count >= 1; got start ",
        FormatSampleValue(start), ", factor ", FormatSampleValue(factor), ", count ", count));
  }
  std::vector<double> bounds;
  bounds.reserve(count);
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) bounds.push_back(b);
  if (absl::Status s = ValidateBucketBounds(bounds); !s.ok()) return s;
  return bounds;
}

// ---------------------------------------------------------------------------------------------
// Families

MetricFamily::MetricFamily(std::string name, std::string help, MetricType type,
                           std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

void MetricFamily::AppendHeader(std::string* out) const {
  out->append("# HELP ");
  out->append(name_);
  out->push_back(' ');
  AppendEscapedHelp(help_, out);
  out->append("\n# TYPE ");
  out->append(name_);
  out->push_back(' ');
  out->append(MetricTypeName(type_));
  out->push_back('\n');
}

namespace {
std::vector<std::string> RenderLeValues(const std::vector<double>& bounds, MetricType type) {
  std::vector<std::string> out;
  if (type != MetricType::kHistogram) return out;
  for (double b : bounds) out.push_back(absl::StrCat("le=\"", FormatSampleValue(b), "\""));
  out.push_back("le=\"+Inf\"");
  return out;
}
}  // namespace

template <typename T>
Family<T>::Family(std::string name, std::string help, MetricType type,
                  std::vector<std::string> label_names, size_t max_series,
                  std::vector<double> bounds)
    : MetricFamily(std::move(name), std::move(help), type, std::move(label_names)),
      max_series_(max_series),
      bounds_(std::move(bounds)),
      le_text_(RenderLeValues(bounds_, type)) {}

template <typename T>
absl::StatusOr<T*> Family<T>::WithLabels(absl::Span<const std::string_view> values) {
  if (values.size() != label_names().size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metric ", name(), " takes ", label_names().size(), " label values, got ", values.size()));
  }
  // Length-prefixed, so no choice of values can make two different tuples collide.
  std::string key;
  for (std::string_view v : values) {
    absl::StrAppend(&key, v.size(), ":");
    key.append(v);
  }
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto it = index_.find(key); it != index_.end()) return it->second;
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (absl::Status s = ValidateUtf8(values[i]); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("label ", label_names()[i], " of metric ",
                                                     name(), ": ", std::string(s.message())));
    }
  }
  absl::MutexLock lock(&mu_);
  if (auto it = index_.find(key); it != index_.end()) return it->second;
  if (series_.size() >= max_series_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("metric ", name(), " already has its maximum of ", max_series_,
                     " label combinations; labels must take few distinct values"));
  }
  Series s;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) s.labels.push_back(',');
    s.labels.append(label_names()[i]);
    s.labels.append("=\"");
    AppendEscapedLabelValue(values[i], &s.labels);
    s.labels.push_back('"');
  }
  if constexpr (std::is_same_v<T, Histogram>) {
    s.metric.reset(new Histogram(bounds_));  // private constructor: Family is a friend
  } else {
    s.metric = std::make_unique<T>();
  }
  T* metric = s.metric.get();
  series_.push_back(std::move(s));
  index_.emplace(std::move(key), metric);
  return metric;
}

template <typename T>
size_t Family<T>::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return series_.size();
}

template <typename T>
void Family<T>::AppendTo(std::string* out) const {
  AppendHeader(out);
  absl::ReaderMutexLock lock(&mu_);
  for (const Series& s : series_) AppendSeries(name(), s.labels, *s.metric, le_text_, out);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---------------------------------------------------------------------------------------------
// Registry

Registry::~Registry() = default;

absl::Status Registry::CheckNewName(std::string_view name, MetricType type,
                                    const std::vector<std::string>& label_names) const {
  if (absl::Status s = ValidateMetricName(name); !s.ok()) return s;
  if (type == MetricType::kCounter && !EndsWith(name, "_total")) {
    return absl::InvalidArgumentError(
        absl::StrCat("counter ", AsString(name), " must have a name ending in \"_total\""));
  }
  for (size_t i = 0; i < label_names.size(); ++i) {
    if (absl::Status s = ValidateLabelName(label_names[i]); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric ", AsString(name), ": ", std::string(s.message())));
    }
    if (type == MetricType::kHistogram && label_names[i] == "le") {
      return absl::InvalidArgumentError(absl::StrCat(
          "histogram ", AsString(name), " may not have a label named \"le\" (it holds buckets)"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (label_names[j] == label_names[i]) {
        return absl::InvalidArgumentError(
            absl::StrCat("metric ", AsString(name), " names label ", label_names[i], " twice"));
      }
    }
  }
  const std::vector<std::string> wanted = SeriesNames(name, type);
  for (const auto& family : families_) {
    for (const std::string& taken : SeriesNames(family->name(), family->type())) {
      if (std::find(wanted.begin(), wanted.end(), taken) != wanted.end()) {
        return absl::AlreadyExistsError(absl::StrCat(
            "metric ", AsString(name), " clashes with the registered ",
            MetricTypeName(family->type()), " ", family->name(), " (series ", taken, ")"));
      }
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<Family<T>*> Registry::AddFamily(std::string_view name, std::string_view help,
                                               MetricType type,
                                               std::vector<std::string> label_names,
                                               size_t max_series, std::vector<double> bounds) {
  if (absl::Status s = ValidateUtf8(help); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("help of metric ", AsString(name), ": ", std::string(s.message())));
  }
  if (type == MetricType::kHistogram) {
    if (absl::Status s = ValidateBucketBounds(bounds); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram ", AsString(name), ": ", std::string(s.message())));
    }
  }
  if (max_series < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric ", AsString(name), ": max_series must be at least 1"));
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckNewName(name, type, label_names); !s.ok()) return s;
  auto family = std::make_unique<Family<T>>(AsString(name), AsString(help), type,
                                            std::move(label_names), max_series, std::move(bounds));
  Family<T>* raw = family.get();
  families_.push_back(std::move(family));
  return raw;
}

absl::StatusOr<Counter*> Registry::AddCounter(std::string_view name, std::string_view help) {
  absl::StatusOr<CounterFamily*> family = AddCounterFamily(name, help, {}, 1);
  if (!family.ok()) return family.status();
  return (*family)->WithLabels({});
}

absl::StatusOr<CounterFamily*> Registry::AddCounterFamily(std::string_view name,
                                                          std::string_view help,
                                                          std::vector<std::string> label_names,
                                                          size_t max_series) {
  return AddFamily<Counter>(name, help, MetricType::kCounter, std::move(label_names), max_series,
                            {});
}

absl::StatusOr<Gauge*> Registry::AddGauge(std::string_view name, std::string_view help) {
  absl::StatusOr<GaugeFamily*> family = AddGaugeFamily(name, help, {}, 1);
  if (!family.ok()) return family.status();
  return (*family)->WithLabels({});
}

absl::StatusOr<GaugeFamily*> Registry::AddGaugeFamily(std::string_view name, std::string_view help,
                                                      std::vector<std::string> label_names,
                                                      size_t max_series) {
  return AddFamily<Gauge>(name, help, MetricType::kGauge, std::move(label_names), max_series, {});
}

absl::StatusOr<Histogram*> Registry::AddHistogram(std::string_view name, std::string_view help,
                                                  std::vector<double> bounds) {
  absl::StatusOr<HistogramFamily*> family =
      AddHistogramFamily(name, help, {}, std::move(bounds), 1);
  if (!family.ok()) return family.status();
  return (*family)->WithLabels({});
}

absl::StatusOr<HistogramFamily*> Registry::AddHistogramFamily(std::string_view name,
                                                              std::string_view help,
                                                              std::vector<std::string> label_names,
                                                              std::vector<double> bounds,
                                                              size_t max_series) {
  return AddFamily<Histogram>(name, help, MetricType::kHistogram, std::move(label_names),
                              max_series, std::move(bounds));
}

absl::Status Registry::AddCallback(std::string_view name, std::string_view help, MetricType type,
                                   std::function<std::optional<double>()> read) {
  if (type == MetricType::kHistogram) {
    return absl::InvalidArgumentError(absl::StrCat(
        "callback metric ", AsString(name), " must be a counter or a gauge, not a histogram"));
  }
  if (!read) {
    return absl::InvalidArgumentError(
        absl::StrCat("callback metric ", AsString(name), " needs a read function"));
  }
  if (absl::Status s = ValidateUtf8(help); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("help of metric ", AsString(name), ": ", std::string(s.message())));
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckNewName(name, type, {}); !s.ok()) return s;
  families_.push_back(
      std::make_unique<CallbackFamily>(AsString(name), AsString(help), type, std::move(read)));
  return absl::OkStatus();
}

int64_t Registry::AddCollectHook(std::function<void()> hook) {
  absl::MutexLock lock(&scrape_mu_);
  const int64_t id = next_hook_id_++;
  hooks_.emplace_back(id, std::move(hook));
  return id;
}

void Registry::RemoveCollectHook(int64_t id) {
  absl::MutexLock lock(&scrape_mu_);
  hooks_.erase(std::remove_if(hooks_.begin(), hooks_.end(),
                              [id](const auto& entry) { return entry.first == id; }),
               hooks_.end());
}

std::string Registry::Expose() const {
  absl::MutexLock scrape(&scrape_mu_);
  for (const auto& [id, hook] : hooks_) hook();
  std::string out;
  out.reserve(16 * 1024);
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& family : families_) family->AppendTo(&out);
  return out;
}

std::vector<std::pair<std::string, MetricType>> Registry::Metrics() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::pair<std::string, MetricType>> out;
  out.reserve(families_.size());
  for (const auto& family : families_) out.emplace_back(family->name(), family->type());
  return out;
}

}  // namespace mamba::metrics
