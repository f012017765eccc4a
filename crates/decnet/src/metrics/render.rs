//! Heartbeat fields to Prometheus samples, through prometheus-client's
//! encoder (a [`Collector`] asked for values at each scrape, so nothing is
//! counted twice: the values are the daemon's own counters, read now).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use serde_json::Value;

use super::catalogue::{Kind, Metric, WorkerMetrics, WORKERS};

/// One heartbeat to render: whose, its fields, and the labels every one
/// of its samples gets (the API adds `host` and `worker`; a daemon's own
/// endpoint adds none).
#[derive(Debug, Clone)]
pub struct HeartbeatSource {
    pub worker: &'static WorkerMetrics,
    pub labels: Vec<(String, String)>,
    pub fields: Value,
}

type Sources = Box<dyn Fn() -> Vec<HeartbeatSource> + Send + Sync>;

/// Renders the heartbeats `sources` returns at scrape time.
pub struct HeartbeatCollector {
    sources: Sources,
}

impl HeartbeatCollector {
    pub fn new(sources: impl Fn() -> Vec<HeartbeatSource> + Send + Sync + 'static) -> Self {
        HeartbeatCollector { sources: Box::new(sources) }
    }
}

impl fmt::Debug for HeartbeatCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeartbeatCollector")
    }
}

/// One sample: its labels and value.
pub type Point = (Vec<(String, String)>, f64);

impl Collector for HeartbeatCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let sources = (self.sources)();
        // Catalogue order, one family per name even when several sources
        // (hosts) report it: a name twice is not valid exposition.
        for worker in WORKERS {
            for metric in worker.metrics {
                let points: Vec<Point> = sources
                    .iter()
                    .filter(|s| s.worker.worker == worker.worker)
                    .flat_map(|s| points_of(metric, s))
                    .collect();
                encode_points(&mut encoder, metric.name, metric.help, metric.kind, &points)?;
            }
        }
        Ok(())
    }
}

/// Write one family. Nothing at all when there are no points, so a field a
/// worker does not report is absent rather than a made-up zero.
pub fn encode_points(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: Kind,
    points: &[Point],
) -> Result<(), fmt::Error> {
    if points.is_empty() {
        return Ok(());
    }
    let (base, metric_type) = match kind {
        // The encoder appends `_total` to a counter's samples itself.
        Kind::Counter => (name.strip_suffix("_total").unwrap_or(name), MetricType::Counter),
        Kind::Gauge => (name, MetricType::Gauge),
    };
    let mut family = encoder.encode_descriptor(base, help, None, metric_type)?;
    for (labels, value) in points {
        if labels.is_empty() {
            encode_value(&mut family, kind, *value)?;
        } else {
            encode_value(&mut family.encode_family(labels)?, kind, *value)?;
        }
    }
    Ok(())
}

fn encode_value(
    encoder: &mut prometheus_client::encoding::MetricEncoder,
    kind: Kind,
    value: f64,
) -> Result<(), fmt::Error> {
    match kind {
        Kind::Counter => encoder.encode_counter::<NoLabelSet, f64, f64>(&value, None),
        Kind::Gauge => encoder.encode_gauge(&value),
    }
}

/// The samples of `metric` in one heartbeat.
fn points_of(metric: &Metric, source: &HeartbeatSource) -> Vec<Point> {
    let mut out = Vec::new();
    for sample in metric.samples {
        let Some(field) = lookup(&source.fields, sample.path) else { continue };
        let mut labels = source.labels.clone();
        labels.extend(sample.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        match sample.per_key {
            None => {
                if let Some(v) = number(field) {
                    out.push((labels, v));
                }
            }
            Some(label) => {
                let Some(map) = field.as_object() else { continue };
                for (key, v) in map {
                    if let Some(v) = number(v) {
                        let mut labels = labels.clone();
                        labels.push((label.to_string(), key.clone()));
                        out.push((labels, v));
                    }
                }
            }
        }
    }
    out
}

fn lookup<'a>(fields: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(fields, |v, key| v.get(key))
}

/// Numbers as they are, booleans as 1/0; anything else is no sample.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}
