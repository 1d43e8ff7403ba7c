//! Alerts from an AI detection pipeline, written with the `weft-plugin` SDK.
//!
//! Inference workers write one plain-JSON record per analysed frame to `detection-events` (six
//! partitions, keyed by camera): `{"camera_id", "frame_id", "model", "captured_at", "detections":
//! [{"label", "confidence"}]}`. This plugin drops detections below `min-confidence` (config,
//! default 0.6) and of labels not in `labels` (config, comma-separated, default
//! `person,vehicle,fire`), and aggregates what is left in a frame into one alert per frame to
//! `detection-alerts` (override with `output-topic`), keyed by camera: how many of each label, the
//! highest confidence, and a severity (`critical` for fire, `warning` for the rest). A frame with
//! nothing left emits nothing.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p detection`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weft_plugin::{Delivery, Error, Event, Handler, Info, Result, Subscription};

#[derive(Deserialize)]
struct Frame {
    camera_id: String,
    frame_id: String,
    model: String,
    #[serde(default)]
    captured_at: Option<String>,
    detections: Vec<Detection>,
}

#[derive(Deserialize)]
struct Detection {
    label: String,
    confidence: f64,
}

#[derive(Serialize, Default)]
struct LabelSummary {
    count: u32,
    max_confidence: f64,
}

#[derive(Serialize)]
struct Alert<'a> {
    camera_id: &'a str,
    frame_id: &'a str,
    model: &'a str,
    captured_at: Option<&'a str>,
    severity: &'static str,
    labels: BTreeMap<&'a str, LabelSummary>,
}

/// A numeric config value, or `default` when unset; a value that is not a number is a permanent
/// error (every event would fail the same way until the configuration is fixed).
fn number(key: &str, default: f64) -> Result<f64> {
    match weft_plugin::config(key) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| Error::permanent(format!("config {key} = {text:?} is not a number"))),
    }
}

struct Detections;

impl Handler for Detections {
    fn describe() -> Info {
        Info::new("detection", env!("CARGO_PKG_VERSION"))
            .description("Filters object-detection results and aggregates each frame into an alert")
            .subscribe(Subscription::topic("detection-events").types(["com.example.detection.frame"]))
    }

    fn handle(event: Event, _delivery: Delivery) -> Result {
        let frame: Frame = event.json_data()?;
        let min_confidence = number("min-confidence", 0.6)?;
        let watched = weft_plugin::config("labels").unwrap_or_else(|| "person,vehicle,fire".into());
        let watched: Vec<&str> = watched.split(',').map(str::trim).collect();

        let mut labels: BTreeMap<&str, LabelSummary> = BTreeMap::new();
        for detection in &frame.detections {
            if !(0.0..=1.0).contains(&detection.confidence) {
                return Err(Error::permanent(format!(
                    "frame {}: confidence {} of {} is not between 0 and 1",
                    frame.frame_id, detection.confidence, detection.label
                )));
            }
            if detection.confidence < min_confidence || !watched.contains(&detection.label.as_str()) {
                continue;
            }
            let summary = labels.entry(&detection.label).or_default();
            summary.count += 1;
            summary.max_confidence = summary.max_confidence.max(detection.confidence);
        }
        if labels.is_empty() {
            return Ok(());
        }
        let alert = Alert {
            camera_id: &frame.camera_id,
            frame_id: &frame.frame_id,
            model: &frame.model,
            captured_at: frame.captured_at.as_deref(),
            severity: if labels.contains_key("fire") { "critical" } else { "warning" },
            labels,
        };
        let output = Event::derived(&event, "alert", "weft/detection", "com.example.detection.alert")
            .subject(format!("/cameras/{}", frame.camera_id))
            .json(&alert)?;
        let topic = weft_plugin::config("output-topic").unwrap_or_else(|| "detection-alerts".into());
        weft_plugin::emit(&topic, &output, Some(frame.camera_id.as_bytes()))?;
        Ok(())
    }
}

weft_plugin::export!(Detections);
