// Android only, beside the generated bindings: hands Android's certificate verifier the JVM and
// the app's Context, once, before the first HTTPS sync (bindings/src/android.rs).
package org.curbside

import android.content.Context

object CurbsideTls {
    init {
        System.loadLibrary("curbside_ffi")
    }

    /** Call once, in Application.onCreate, before any sync. */
    @JvmStatic
    external fun init(context: Context)
}
