// A small Prometheus metrics registry: counters, gauges and histograms with fixed buckets, in
// families with label names fixed at registration, rendered in the text exposition format 0.0.4.
//
// Recording is lock-free: Counter, Gauge and Histogram are updated with relaxed atomics (a
// counter: one atomic add; a histogram observation: one add to its bucket and a compare-and-swap
// on its sum), so the engine may record per token without a lock. Locks are taken only to create
// a labelled series (Family::WithLabels) and to render (Registry::Expose); hot paths look their
// series up once and keep the pointer.
//
// Thread-safety: every method of every class here may be called from any thread. Pointers returned
// by the registry stay valid as long as the registry; series are never removed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace mamba::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };
// "counter", "gauge", "histogram": the word a # TYPE line uses.
const char* MetricTypeName(MetricType type);

// A monotonically increasing total. Integral increments are one atomic add; fractional ones (e.g.
// CPU seconds) go to a separate double updated by compare-and-swap, so integer counts stay exact.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Increment(uint64_t n = 1) { whole_.fetch_add(n, std::memory_order_relaxed); }
  // Adds `amount`; negative and NaN amounts are ignored, because a counter never goes down.
  void IncrementBy(double amount);
  double Value() const;

 private:
  std::atomic<uint64_t> whole_{0};
  std::atomic<double> fraction_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into fixed buckets. The +Inf bucket is implicit. The count is derived from
// the buckets when read, so a snapshot always has +Inf bucket == count even while other threads
// observe; the sum is updated separately and may lag by the observations in flight.
class Histogram {
 public:
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf; non-decreasing
    double sum = 0;
    uint64_t count = 0;  // == cumulative.back()
  };

  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Records `value` in the first bucket whose upper bound is >= value. NaN is ignored (it would
  // make the sum NaN for the life of the process).
  void Observe(double value);
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  template <typename T>
  friend class Family;
  // `bounds` must have passed ValidateBucketBounds.
  explicit Histogram(std::vector<double> bounds);

  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0.0};
};

// OK when `bounds` are finite and strictly increasing (+Inf is added by the histogram itself).
absl::Status ValidateBucketBounds(absl::Span<const double> bounds);
// `count` bounds: start, start*factor, start*factor^2, ... (start > 0, factor > 1, count >= 1).
absl::StatusOr<std::vector<double>> ExponentialBuckets(double start, double factor, int count);

// Everything the registry needs to render one family, whatever its value type.
class MetricFamily {
 public:
  virtual ~MetricFamily() = default;
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Appends the # HELP and # TYPE lines and every sample.
  virtual void AppendTo(std::string* out) const = 0;

 protected:
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names);
  void AppendHeader(std::string* out) const;

 private:
  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
};

// The series of one metric, one per combination of label values. T is Counter, Gauge or Histogram.
template <typename T>
class Family final : public MetricFamily {
 public:
  // The series with these label values (one per label name, valid UTF-8), created at zero on first
  // use. Fails with INVALID_ARGUMENT for a wrong number of values or invalid UTF-8, and with
  // RESOURCE_EXHAUSTED once the family holds max_series series (labels must stay low-cardinality).
  absl::StatusOr<T*> WithLabels(absl::Span<const std::string_view> values);
  size_t size() const;

  void AppendTo(std::string* out) const override;

  // Use Registry::Add*Family.
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
         size_t max_series, std::vector<double> bounds);

 private:
  struct Series {
    std::string labels;  // rendered: name="value",... (escaped), empty without labels
    std::unique_ptr<T> metric;
  };

  const size_t max_series_;
  const std::vector<double> bounds_;        // histograms only
  const std::vector<std::string> le_text_;  // rendered bounds, then "+Inf"
  mutable absl::Mutex mu_;
  std::vector<Series> series_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, T*> index_ ABSL_GUARDED_BY(mu_);
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class Registry {
 public:
  static constexpr size_t kDefaultMaxSeries = 100;

  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry();

  // Each Add* registers a metric and fails with INVALID_ARGUMENT for an invalid name, label name
  // or bucket list, a counter whose name does not end in "_total", a histogram label named "le",
  // or help text that is not UTF-8; with ALREADY_EXISTS when the name (or a histogram's
  // _bucket/_sum/_count series) is taken. Unlabelled forms return the single series.
  absl::StatusOr<Counter*> AddCounter(std::string_view name, std::string_view help);
  absl::StatusOr<CounterFamily*> AddCounterFamily(std::string_view name, std::string_view help,
                                                  std::vector<std::string> label_names,
                                                  size_t max_series = kDefaultMaxSeries);
  absl::StatusOr<Gauge*> AddGauge(std::string_view name, std::string_view help);
  absl::StatusOr<GaugeFamily*> AddGaugeFamily(std::string_view name, std::string_view help,
                                              std::vector<std::string> label_names,
                                              size_t max_series = kDefaultMaxSeries);
  absl::StatusOr<Histogram*> AddHistogram(std::string_view name, std::string_view help,
                                          std::vector<double> bounds);
  absl::StatusOr<HistogramFamily*> AddHistogramFamily(std::string_view name, std::string_view help,
                                                      std::vector<std::string> label_names,
                                                      std::vector<double> bounds,
                                                      size_t max_series = kDefaultMaxSeries);

  // An unlabelled counter or gauge whose value `read` computes at every scrape (e.g. from /proc).
  // When `read` returns nullopt the metric is listed without a sample.
  absl::Status AddCallback(std::string_view name, std::string_view help, MetricType type,
                           std::function<std::optional<double>()> read);

  // Runs `hook` at the start of every Expose(), before rendering, one scrape at a time: collectors
  // use it to refresh gauges from their source. Returns an id for RemoveCollectHook.
  int64_t AddCollectHook(std::function<void()> hook);
  // After this returns, the hook is not running and will not run again.
  void RemoveCollectHook(int64_t id);

  // Runs the collect hooks, then renders every metric in registration order.
  std::string Expose() const;

  // Names and types of every registered metric, in registration order.
  std::vector<std::pair<std::string, MetricType>> Metrics() const;

 private:
  absl::Status CheckNewName(std::string_view name, MetricType type,
                            const std::vector<std::string>& label_names) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  template <typename T>
  absl::StatusOr<Family<T>*> AddFamily(std::string_view name, std::string_view help,
                                       MetricType type, std::vector<std::string> label_names,
                                       size_t max_series, std::vector<double> bounds);

  // Serializes scrapes, so hooks never run concurrently with each other or with their removal.
  mutable absl::Mutex scrape_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<MetricFamily>> families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int64_t, std::function<void()>>> hooks_ ABSL_GUARDED_BY(scrape_mu_);
  int64_t next_hook_id_ ABSL_GUARDED_BY(scrape_mu_) = 1;
};

}  // namespace mamba::metrics
