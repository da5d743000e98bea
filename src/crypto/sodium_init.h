#ifndef SILO_CRYPTO_SODIUM_INIT_H_
#define SILO_CRYPTO_SODIUM_INIT_H_

namespace silo::crypto {

// Initialises libsodium once; aborts the process if it cannot (no safe fallback).
// Thread-safe.
void EnsureSodium();

}  // namespace silo::crypto

#endif  // SILO_CRYPTO_SODIUM_INIT_H_
