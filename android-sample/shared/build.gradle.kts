// Platform-free: plain Kotlin/JVM, so the same code runs in the app and in CI's JVM scenario.
// The generated bindings (scripts/build-android.sh writes them to ../target/android/kotlin) are
// compiled into this module; JNA comes as a jar here and as an AAR in the app.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
    sourceSets["main"].kotlin.srcDir("../../target/android/kotlin")
}

dependencies {
    api("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.9.0")
    compileOnly("net.java.dev.jna:jna:5.15.0")
}
