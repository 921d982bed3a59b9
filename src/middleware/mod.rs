//! The tower middleware: [`ClientCredentialsLayer`], the [`ClientCredentials`] service and its
//! [`ResponseFuture`].
//!
//! See the [crate docs](crate) for an example.

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::{ClientCredentialsBuilder, ClientCredentialsLayer};
pub use self::service::ClientCredentials;
