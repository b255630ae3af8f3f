/*
 * tg_p11: the PKCS#11 API as the pkcs11 provider uses it.
 *
 * The types and constants come from Debian's p11-kit header (package
 * libp11-kit-dev), in the standard ("compat") spelling of PKCS#11 v2.40. No
 * PKCS#11 wrapper library is linked: modules are loaded with dlopen and
 * called through their C_GetFunctionList table (tg_p11_module.h).
 *
 * p11-kit's header also #defines lower-case aliases of structure members
 * (value, count, params, slot_id, ...) for its GNU spelling; they would
 * silently rename fields of tlsgate's own structs (struct tg_conf_param has
 * a `value`), so they are undefined here. Include this header, never
 * <p11-kit/pkcs11.h> directly.
 */
#ifndef TG_P11_H
#define TG_P11_H

#include <p11-kit/pkcs11.h>

#undef cryptoki_version
#undef manufacturer_id
#undef library_description
#undef library_version
#undef slot_description
#undef hardware_version
#undef firmware_version
#undef serial_number
#undef max_session_count
#undef session_count
#undef max_rw_session_count
#undef rw_session_count
#undef max_pin_len
#undef min_pin_len
#undef total_public_memory
#undef free_public_memory
#undef total_private_memory
#undef free_private_memory
#undef utc_time
#undef slot_id
#undef device_error
#undef value
#undef value_len
#undef count
#undef parameter
#undef parameter_len
#undef params
#undef min_key_size
#undef max_key_size
#undef create_mutex
#undef destroy_mutex
#undef lock_mutex
#undef unlock_mutex
#undef reserved
#undef hash_alg
#undef s_len
#undef source_data
#undef source_data_len
#undef counter_bits
#undef iv_ptr
#undef iv_len
#undef iv_bits
#undef aad_ptr
#undef aad_len
#undef tag_bits
#undef shared_data_len
#undef shared_data
#undef public_data_len
#undef public_data
#undef string_data
#undef string_data_len
#undef data_params

#endif
