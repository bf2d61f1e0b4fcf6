/* A stand-in for Windows' bcryptprimitives.dll under wine 8 (Debian bookworm's), which lacks
 * it: Rust's std imports ProcessPrng from it for random numbers (HashMap keys). Windows 10 and
 * later have the real one; this only serves the tests that run haul.exe under wine. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
