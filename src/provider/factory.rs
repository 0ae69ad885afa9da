//! The one place a provider is built from a [`ProviderConfig`]: a
//! [`Connector`] knows the clouds (the real one, or the tests' fake), and
//! [`connect`] wraps what it built in the metrics decorator, once.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::aws::AwsAutoScalingGroup;
use super::gce::GceManagedInstanceGroup;
use super::metered::Metered;
use super::{CloudProvider, ProviderConfig, ProviderError};

/// Builds the provider a config names.
pub trait Connector: Send + Sync {
    fn connect(
        &self,
        config: ProviderConfig,
    ) -> BoxFuture<'static, Result<Arc<dyn CloudProvider>, ProviderError>>;
}

/// The clouds this build talks to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clouds;

impl Connector for Clouds {
    fn connect(
        &self,
        config: ProviderConfig,
    ) -> BoxFuture<'static, Result<Arc<dyn CloudProvider>, ProviderError>> {
        Box::pin(async move {
            match config {
                ProviderConfig::AwsAutoScalingGroup(c) => {
                    Ok(Arc::new(AwsAutoScalingGroup::new(c).await?) as Arc<dyn CloudProvider>)
                }
                ProviderConfig::GceManagedInstanceGroup(c) => {
                    Ok(Arc::new(GceManagedInstanceGroup::new(c).await?) as Arc<dyn CloudProvider>)
                }
            }
        })
    }
}

/// Build the provider `config` names, its calls counted in the metrics.
pub async fn connect(
    connector: &dyn Connector,
    config: ProviderConfig,
) -> Result<Arc<dyn CloudProvider>, ProviderError> {
    let provider = connector.connect(config).await?;
    Ok(Arc::new(Metered::new(provider)))
}
