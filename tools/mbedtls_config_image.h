/* mbedTLS configuration of the emulated boards' images (tools/build_frozen.sh).
 *
 * MicroPython's own configuration for a board (extmod/mbedtls/mbedtls_config_common.h with
 * MICROPY_MBEDTLS_CONFIG_BARE_METAL): mbedTLS allocates through MicroPython's tracked
 * allocator, from the GC heap, as on rp2 and stm32, so `-X heapsize=` and the `status` heap
 * fields count a TLS association's memory as a board's heap would. Entropy comes from the host
 * (getrandom), as MicroPython's unix coverage build does, instead of a board's hardware RNG.
 * TLS 1.2 only (BCP 195 asks for 1.2 or later); mbedTLS 3.6 has no TLS 1.0 or 1.1.
 */
#ifndef MODGATE_MBEDTLS_CONFIG_IMAGE_H
#define MODGATE_MBEDTLS_CONFIG_IMAGE_H

#define MICROPY_MBEDTLS_CONFIG_BARE_METAL (1)
#define MBEDTLS_CIPHER_MODE_CTR
#define MBEDTLS_TIMING_C

#include "extmod/mbedtls/mbedtls_config_common.h"

#undef MBEDTLS_ENTROPY_HARDWARE_ALT
#undef MBEDTLS_NO_PLATFORM_ENTROPY

#endif
