//! Android only: the HTTP client verifies certificates with Android's own verifier
//! (rustls-platform-verifier), which needs the JVM and the app's `Context` once, before the
//! first HTTPS call. The app calls `org.curbside.CurbsideTls.init(context)`
//! (`bindings/android/CurbsideTls.kt`) at start; a failure is thrown as a Java RuntimeException.

use jni::errors::ThrowRuntimeExAndDefault;
use jni::jni_mangle;
use jni::objects::{JClass, JObject};
use jni::EnvUnowned;

#[jni_mangle("org.curbside.CurbsideTls")]
pub fn init<'caller>(
    mut unowned_env: EnvUnowned<'caller>,
    _class: JClass<'caller>,
    context: JObject<'caller>,
) {
    unowned_env
        .with_env(|env| rustls_platform_verifier::android::init_with_env(env, context))
        .resolve::<ThrowRuntimeExAndDefault>();
}
