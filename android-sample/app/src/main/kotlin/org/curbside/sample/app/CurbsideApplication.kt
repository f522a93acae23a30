package org.curbside.sample.app

import android.app.Application
import android.util.Log
import org.curbside.CurbsideStore
import org.curbside.CurbsideTls
import org.curbside.LogLevel
import org.curbside.LogSink
import org.curbside.sample.CurbsideRepository
import org.curbside.setLogSink
import java.io.File

/** One store per process, opened once: a second open of the same file is refused. */
class CurbsideApplication : Application() {
    lateinit var repository: CurbsideRepository
        private set

    override fun onCreate() {
        super.onCreate()
        // Before any sync: the library's HTTPS verifies certificates with Android's verifier.
        CurbsideTls.init(this)
        setLogSink(object : LogSink {
            override fun log(level: LogLevel, target: String, message: String) {
                // The library's lines carry counts and ids, never what a person typed.
                when (level) {
                    LogLevel.ERROR -> Log.e(target, message)
                    LogLevel.WARN -> Log.w(target, message)
                    LogLevel.INFO -> Log.i(target, message)
                    else -> Log.d(target, message)
                }
            }
        }, LogLevel.INFO)
        val dir = File(filesDir, "curbside").apply { mkdirs() }
        repository = CurbsideRepository(CurbsideStore.open(File(dir, "curbside.sqlite").path))
        SyncWorker.schedule(this)
    }
}
