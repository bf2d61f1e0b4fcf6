//! Log lines (`tracing`): what a user reads by default (`warning: …`, no timestamp, level
//! column or module path), more with `-v`, written where they do not break the progress
//! display.

use std::io::IsTerminal;

use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Starts the log for `-v` given `verbose` times (`-q`: `quiet`), written to `writer`.
pub fn init(verbose: u8, quiet: bool, writer: BoxMakeWriter) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        // -q: errors only, and haul says those itself.
        0 if quiet => "error,rustls_platform_verifier=off",
        // The verifier logs each untrusted certificate as an error; haul's own message says
        // it and what to do.
        0 => "warn,rustls_platform_verifier=off",
        1 => "haul=debug,info",
        _ => "haul=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a terminal: a warning kept in a file reads as plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let _ = if verbose == 0 {
        // What a user reads: `warning: …`, no timestamp, level column or module path.
        builder.event_format(Plain).try_init()
    } else {
        builder.try_init()
    };
}

/// Warnings and errors as a user reads them: `warning: the message`.
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let label = match level {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        if writer.has_ansi_escapes() {
            let colour = if level == tracing::Level::ERROR {
                "31"
            } else {
                "33"
            };
            write!(writer, "\x1b[{colour}m{label}\x1b[0m: ")?;
        } else {
            write!(writer, "{label}: ")?;
        }
        context
            .field_format()
            .format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
