//! `wasi:logging@0.1.0-draft` onto `tracing`, tagged with the component's name.

use crate::bindings::logging::{self, Level};
use wasmtime::component::{HasData, Linker};

/// The borrowed view: which component is logging.
pub struct LoggingView<'a> {
    pub component: &'a str,
}

impl logging::Host for LoggingView<'_> {
    fn log(&mut self, level: Level, context: String, message: String) -> wasmtime::Result<()> {
        let component = self.component;
        match level {
            Level::Trace => tracing::trace!(component, context, "{message}"),
            Level::Debug => tracing::debug!(component, context, "{message}"),
            Level::Info => tracing::info!(component, context, "{message}"),
            Level::Warn => tracing::warn!(component, context, "{message}"),
            Level::Error | Level::Critical => tracing::error!(component, context, "{message}"),
        }
        Ok(())
    }
}

struct HasLogging;

impl HasData for HasLogging {
    type Data<'a> = LoggingView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, f: fn(&mut T) -> LoggingView<'_>) -> wasmtime::Result<()> {
    logging::add_to_linker::<_, HasLogging>(linker, f)
}
