//! The environment of a slot: Lambda's reserved variables, the runtime's own, and
//! the function's variables.

use nimbus_runtime::RuntimeOffer;
use nimbus_sandbox::SlotLayout;

use crate::InvokeRequest;

/// Builds the complete environment of a new slot. The sandbox backend adds
/// `AWS_LAMBDA_RUNTIME_API`.
pub fn slot_environment(
    request: &InvokeRequest,
    region: &str,
    slot_id: &str,
    layout: &SlotLayout,
    offer: &RuntimeOffer,
    initialization_type: &str,
) -> Vec<(String, String)> {
    let settings = &request.settings;
    let task_root = layout.task_root.display().to_string();
    let today = time::OffsetDateTime::now_utc().date();
    let log_stream = format!(
        "{:04}/{:02}/{:02}/[{}]{slot_id}",
        today.year(),
        u8::from(today.month()),
        today.day(),
        request.version
    );
    let mut env: Vec<(String, String)> = vec![
        ("AWS_LAMBDA_FUNCTION_NAME".into(), request.function_name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), request.version.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            settings.memory_size.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{}", request.function_name),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME".into(), log_stream),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), initialization_type.into()),
        ("AWS_EXECUTION_ENV".into(), format!("AWS_Lambda_{}", settings.runtime)),
        ("AWS_REGION".into(), region.to_string()),
        ("AWS_DEFAULT_REGION".into(), region.to_string()),
        ("_HANDLER".into(), settings.handler.clone()),
        ("LAMBDA_TASK_ROOT".into(), task_root.clone()),
        ("LAMBDA_RUNTIME_DIR".into(), layout.runtime_root.display().to_string()),
        ("TZ".into(), ":UTC".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("PATH".into(), format!("/usr/local/bin:/usr/bin:/bin:{task_root}/bin")),
        ("LD_LIBRARY_PATH".into(), format!("{task_root}/lib")),
    ];
    env.extend(offer.environment(&layout.runtime_root, &layout.task_root));
    env.extend(settings.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}
