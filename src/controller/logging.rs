//! JSON logs, one flat object per line: `timestamp`, `level`, `target`, the fields of every
//! enclosing span (so each line of a reconcile carries `namespace` and `name`), then the event's
//! own fields and `message`. Flat rather than tracing-subscriber's nested `span` object, whose own
//! `name` key would clash with the SignedImage's `name` field.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Fields of a span, kept in its extensions.
struct SpanFields(BTreeMap<String, Value>);

struct JsonVisitor<'a>(&'a mut BTreeMap<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// Records span fields so that the formatter can flatten them into each line.
struct SpanFieldsLayer;

impl<S> Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = BTreeMap::new();
            attrs.record(&mut JsonVisitor(&mut fields));
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(fields));
            }
        }
    }
}

/// The flat JSON line format.
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::from(jiff::Timestamp::now().to_string()),
        );
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in fields {
                        line.insert(k.clone(), v.clone());
                    }
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".into(), Value::from(name));
            }
        }
        let mut fields = BTreeMap::new();
        event.record(&mut JsonVisitor(&mut fields));
        for (k, v) in fields {
            line.insert(k, v);
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// `filter` with rustls-platform-verifier's own log off unless it names that crate: the verifier
/// logs every refused certificate at ERROR, and the cause is already in the failed run's
/// status reason and log line (`tls::with_causes`).
fn with_quiet_libraries(filter: &str) -> String {
    if filter.contains("rustls_platform_verifier") {
        filter.to_string()
    } else {
        format!("{filter},rustls_platform_verifier=off")
    }
}

/// Installs the JSON logger on stdout; `filter` in `RUST_LOG` syntax (`RUST_LOG` wins when
/// set). A second call does nothing.
pub fn init(filter: &str) {
    init_with_writer(filter, std::io::stdout);
}

/// [`init`] with another writer (tests capture the lines).
pub fn init_with_writer<W>(filter: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(with_quiet_libraries(filter)));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(SpanFieldsLayer)
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(FlatJson)
                .with_writer(writer),
        )
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_verifier_is_quiet_unless_asked_for() {
        assert_eq!(
            with_quiet_libraries("info"),
            "info,rustls_platform_verifier=off"
        );
        assert_eq!(
            with_quiet_libraries("info,rustls_platform_verifier=debug"),
            "info,rustls_platform_verifier=debug"
        );
        // The result is a filter EnvFilter takes.
        assert!(EnvFilter::try_new(with_quiet_libraries("trustkeeper=debug,warn")).is_ok());
    }
}
