/* onnxruntime custom operator for CKConv's per-frequency channel mix (ser_models.ckconv.SpectralMix).
 *
 *   y_real[f, b, o] = sum_i x_real[f, b, i] K_real[f, i, o] - x_imag[f, b, i] K_imag[f, i, o]
 *   y_imag[f, b, o] = sum_i x_real[f, b, i] K_imag[f, i, o] + x_imag[f, b, i] K_real[f, i, o]
 *
 * Inputs x_real, x_imag (F, B, I) float32 and kernel_real, kernel_imag (F, I, O), float32 or (where
 * the folded graph stores them so, ser_models.folding) float16; outputs y_real, y_imag (F, B, O). At batch 1 this is a matrix-vector product per frequency, bound by
 * reading the kernel spectra: onnxruntime's MatMul repacks a 3-D constant right-hand side on every
 * call. Here the constant spectra are packed once, at kernel creation, per frequency as rows of
 * [real | imag] padded to 8 outputs, in float16 (session config "ser_ros.spectral_mix_precision" =
 * "float16", the default), or read in place in float32 ("float32"); products accumulate in float32
 * registers (AVX2, FMA, F16C where the CPU has them, else a portable loop over packed float32 rows).
 */
#include <onnxruntime_c_api.h>

#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOMAIN "ser_models.ckconv" /* ser_models.native.DOMAIN */
#define OP_NAME "SpectralMix"
#define PRECISION_KEY "ser_ros.spectral_mix_precision"
#define LANES 8
#define MAX_VECTORS 5 /* 10 accumulators + 2 broadcasts + loads fit the 16 ymm registers */

typedef struct {
    OrtCustomOp base; /* first, so an OrtCustomOp* is a MixOp* */
    int half;
} MixOp;

typedef struct {
    int half, vector_unit;
    int64_t freqs, in_ch, out_ch, padded;
    void *packed; /* constant kernel, packed; NULL when read in place or an ordinary input */
    const float *in_place[2]; /* constant float32 kernel parts read where onnxruntime holds them */
    size_t packed_bytes;
    void *scratch; /* per-call packing of a non-constant kernel */
    size_t scratch_bytes;
} MixKernel;

static const OrtApi *g_api;

static int has_vector_unit(void) {
    const char *portable = getenv("SER_SPECTRAL_MIX_PORTABLE"); /* "1": test the portable loop */
    if (portable && strcmp(portable, "1") == 0) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

static OrtStatus *fail(const char *message) { return g_api->CreateStatus(ORT_INVALID_ARGUMENT, message); }

static OrtStatus *shape_of(const OrtValue *value, int64_t dims[3], const char *what,
                           ONNXTensorElementDataType *type) {
    OrtTensorTypeAndShapeInfo *info;
    size_t rank;
    char message[160];
    OrtStatus *status = g_api->GetTensorTypeAndShape(value, &info);
    if (status) return status;
    if (type) status = g_api->GetTensorElementType(info, type);
    if (!status) status = g_api->GetDimensionsCount(info, &rank);
    if (!status && rank != 3) {
        snprintf(message, sizeof message, OP_NAME ": %s must be 3-D, got rank %zu", what, rank);
        status = fail(message);
    }
    if (!status) status = g_api->GetDimensions(info, dims, 3);
    g_api->ReleaseTensorTypeAndShapeInfo(info);
    return status;
}

/* Packed row (f, i): real[padded] then imag[padded], each in the stored precision. */
__attribute__((target("avx2,fma,f16c"))) static void pack_row_half(uint16_t *row, const float *values, int64_t n,
                                                                    int64_t padded) {
    float staged[LANES];
    for (int64_t o = 0; o < padded; o += LANES) {
        for (int lane = 0; lane < LANES; lane++) staged[lane] = o + lane < n ? values[o + lane] : 0.0f;
        _mm_storeu_si128((__m128i *)(row + o), _mm256_cvtps_ph(_mm256_loadu_ps(staged), _MM_FROUND_TO_NEAREST_INT));
    }
}

/* IEEE half to float without F16C (the portable loop's rows). */
static float half_to_float(uint16_t half) {
    uint32_t sign = (uint32_t)(half >> 15) << 31, exponent = (half >> 10) & 0x1f, mantissa = half & 0x3ff, bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);            /* inf, nan */
    } else if (exponent) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13); /* normal: rebias 15 -> 127 */
    } else if (mantissa) {                                          /* subnormal: normalise */
        exponent = 113;
        while (!(mantissa & 0x400)) {
            mantissa <<= 1;
            exponent--;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
    } else {
        bits = sign;
    }
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static void pack(const MixKernel *k, void *target, const void *real, const void *imag, int half_source) {
    for (int64_t f = 0; f < k->freqs; f++) {
        for (int64_t i = 0; i < k->in_ch; i++) {
            size_t row = (size_t)(f * k->in_ch + i) * 2 * k->padded;
            size_t source = (size_t)(f * k->in_ch + i) * k->out_ch;
            if (half_source && !k->half) { /* float16 spectra, float32 rows */
                float *out = (float *)target + row;
                memset(out, 0, 2 * k->padded * sizeof(float));
                for (int64_t o = 0; o < k->out_ch; o++) {
                    out[o] = half_to_float(((const uint16_t *)real)[source + o]);
                    out[k->padded + o] = half_to_float(((const uint16_t *)imag)[source + o]);
                }
            } else if (half_source) { /* already float16: copy into padded rows */
                uint16_t *out = (uint16_t *)target + row;
                memset(out, 0, 2 * k->padded * sizeof(uint16_t));
                memcpy(out, (const uint16_t *)real + source, k->out_ch * sizeof(uint16_t));
                memcpy(out + k->padded, (const uint16_t *)imag + source, k->out_ch * sizeof(uint16_t));
            } else if (k->half) {
                uint16_t *out = (uint16_t *)target + row;
                pack_row_half(out, (const float *)real + source, k->out_ch, k->padded);
                pack_row_half(out + k->padded, (const float *)imag + source, k->out_ch, k->padded);
            } else {
                float *out = (float *)target + row;
                memset(out, 0, 2 * k->padded * sizeof(float));
                memcpy(out, (const float *)real + source, k->out_ch * sizeof(float));
                memcpy(out + k->padded, (const float *)imag + source, k->out_ch * sizeof(float));
            }
        }
    }
}

static inline __attribute__((always_inline, target("avx2,fma,f16c"))) __m256 load_lanes(const void *base, size_t index,
                                                                                        int half) {
    if (half) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + index)));
    return _mm256_loadu_ps((const float *)base + index);
}

/* One frequency's kernel rows: input channel i's real and imaginary outputs start at real + i * stride
 * and imag + i * stride (packed: padded, side by side; in place: unpadded, in two tensors). */
typedef struct {
    const void *real, *imag;
    size_t stride;
} Rows;

/* One frequency, one batch row, `vectors` x 8 outputs starting at output `first`; with `masked`, the
 * last vector's lanes past out_ch are not read (unpadded rows). */
static inline __attribute__((always_inline, target("avx2,fma,f16c"))) void mix_block(
    const MixKernel *k, Rows rows, const float *xr, const float *xi, float *yr, float *yi, int64_t first,
    int vectors, int half, int masked) {
    __m256 acc_r[MAX_VECTORS], acc_i[MAX_VECTORS];
    __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(k->out_ch - first - (vectors - 1) * LANES)),
                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int v = 0; v < vectors; v++) acc_r[v] = acc_i[v] = _mm256_setzero_ps();
    for (int64_t i = 0; i < k->in_ch; i++) {
        __m256 re = _mm256_set1_ps(xr[i]), im = _mm256_set1_ps(xi[i]);
        size_t row = (size_t)i * rows.stride + first;
        for (int v = 0; v < vectors; v++) {
            __m256 kr, ki;
            if (masked && v == vectors - 1) {
                kr = _mm256_maskload_ps((const float *)rows.real + row + v * LANES, tail);
                ki = _mm256_maskload_ps((const float *)rows.imag + row + v * LANES, tail);
            } else {
                kr = load_lanes(rows.real, row + v * LANES, half);
                ki = load_lanes(rows.imag, row + v * LANES, half);
            }
            acc_r[v] = _mm256_fnmadd_ps(im, ki, _mm256_fmadd_ps(re, kr, acc_r[v]));
            acc_i[v] = _mm256_fmadd_ps(im, kr, _mm256_fmadd_ps(re, ki, acc_i[v]));
        }
    }
    float staged[2][MAX_VECTORS * LANES];
    for (int v = 0; v < vectors; v++) {
        _mm256_storeu_ps(staged[0] + v * LANES, acc_r[v]);
        _mm256_storeu_ps(staged[1] + v * LANES, acc_i[v]);
    }
    int64_t count = k->out_ch - first < vectors * LANES ? k->out_ch - first : vectors * LANES;
    memcpy(yr + first, staged[0], count * sizeof(float));
    memcpy(yi + first, staged[1], count * sizeof(float));
}

#define MIX_CASES(HALF, MASKED)                                                                \
    switch (vectors) {                                                                         \
        case 1: mix_block(k, rows, xr, xi, yr, yi, first, 1, HALF, MASKED); break;             \
        case 2: mix_block(k, rows, xr, xi, yr, yi, first, 2, HALF, MASKED); break;             \
        case 3: mix_block(k, rows, xr, xi, yr, yi, first, 3, HALF, MASKED); break;             \
        case 4: mix_block(k, rows, xr, xi, yr, yi, first, 4, HALF, MASKED); break;             \
        default: mix_block(k, rows, xr, xi, yr, yi, first, MAX_VECTORS, HALF, MASKED); break;  \
    }

__attribute__((target("avx2,fma,f16c"))) static void mix_vector(const MixKernel *k, const void *packed, int64_t batch,
                                                                 const float *x_real, const float *x_imag,
                                                                 float *y_real, float *y_imag) {
    int64_t total = k->padded / LANES;
    for (int64_t f = 0; f < k->freqs; f++) {
        Rows rows;
        if (packed) {
            rows.real = (const char *)packed + (size_t)f * k->in_ch * 2 * k->padded * (k->half ? 2 : 4);
            rows.imag = (const char *)rows.real + k->padded * (k->half ? 2 : 4);
            rows.stride = 2 * k->padded;
        } else {
            rows.real = k->in_place[0] + (size_t)f * k->in_ch * k->out_ch;
            rows.imag = k->in_place[1] + (size_t)f * k->in_ch * k->out_ch;
            rows.stride = k->out_ch;
        }
        for (int64_t b = 0; b < batch; b++) {
            const float *xr = x_real + (f * batch + b) * k->in_ch, *xi = x_imag + (f * batch + b) * k->in_ch;
            float *yr = y_real + (f * batch + b) * k->out_ch, *yi = y_imag + (f * batch + b) * k->out_ch;
            for (int64_t done = 0; done < total; done += MAX_VECTORS) {
                int vectors = total - done < MAX_VECTORS ? (int)(total - done) : MAX_VECTORS;
                int64_t first = done * LANES;
                if (k->half) {
                    MIX_CASES(1, 0)
                } else if (packed) {
                    MIX_CASES(0, 0)
                } else {
                    MIX_CASES(0, 1)
                }
            }
        }
    }
}

static void mix_portable(const MixKernel *k, const float *packed, int64_t batch, const float *x_real,
                         const float *x_imag, float *y_real, float *y_imag) {
    for (int64_t f = 0; f < k->freqs; f++) {
        for (int64_t b = 0; b < batch; b++) {
            const float *xr = x_real + (f * batch + b) * k->in_ch, *xi = x_imag + (f * batch + b) * k->in_ch;
            float *yr = y_real + (f * batch + b) * k->out_ch, *yi = y_imag + (f * batch + b) * k->out_ch;
            memset(yr, 0, k->out_ch * sizeof(float));
            memset(yi, 0, k->out_ch * sizeof(float));
            for (int64_t i = 0; i < k->in_ch; i++) {
                const float *kr = packed + (size_t)(f * k->in_ch + i) * 2 * k->padded, *ki = kr + k->padded;
                for (int64_t o = 0; o < k->out_ch; o++) {
                    yr[o] += xr[i] * kr[o] - xi[i] * ki[o];
                    yi[o] += xr[i] * ki[o] + xi[i] * kr[o];
                }
            }
        }
    }
}

/* Sizes from the kernel spectra (F, I, O); both parts must agree, in shape and element type. */
static OrtStatus *kernel_sizes(MixKernel *k, const OrtValue *real, const OrtValue *imag, int *half_source) {
    int64_t real_dims[3], imag_dims[3];
    ONNXTensorElementDataType real_type, imag_type;
    OrtStatus *status = shape_of(real, real_dims, "kernel_real", &real_type);
    if (!status) status = shape_of(imag, imag_dims, "kernel_imag", &imag_type);
    if (status) return status;
    if (memcmp(real_dims, imag_dims, sizeof real_dims) != 0 || real_type != imag_type)
        return fail(OP_NAME ": kernel parts differ in shape or type");
    if (real_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && real_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16)
        return fail(OP_NAME ": kernel spectra must be float32 or float16");
    *half_source = real_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    k->freqs = real_dims[0];
    k->in_ch = real_dims[1];
    k->out_ch = real_dims[2];
    k->padded = (k->out_ch + LANES - 1) / LANES * LANES;
    return NULL;
}

static size_t packed_size(const MixKernel *k) {
    return (size_t)k->freqs * k->in_ch * 2 * k->padded * (k->half ? 2 : 4);
}

static OrtStatus *pack_values(MixKernel *k, const OrtValue *real, const OrtValue *imag, void **target,
                              size_t *capacity) {
    void *real_data, *imag_data;
    int half_source;
    OrtStatus *status = kernel_sizes(k, real, imag, &half_source);
    if (!status) status = g_api->GetTensorMutableData((OrtValue *)real, &real_data);
    if (!status) status = g_api->GetTensorMutableData((OrtValue *)imag, &imag_data);
    if (status) return status;
    size_t bytes = packed_size(k);
    if (bytes > *capacity) {
        void *grown = realloc(*target, bytes);
        if (!grown) return g_api->CreateStatus(ORT_FAIL, OP_NAME ": out of memory packing the kernel spectra");
        *target = grown;
        *capacity = bytes;
    }
    pack(k, *target, real_data, imag_data, half_source);
    return NULL;
}

static OrtStatus *ORT_API_CALL create_kernel(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                             void **out) {
    MixKernel *k = calloc(1, sizeof *k);
    if (!k) return api->CreateStatus(ORT_FAIL, OP_NAME ": out of memory");
    k->vector_unit = has_vector_unit();
    k->half = ((const MixOp *)op)->half && k->vector_unit; /* the portable loop reads float32 rows */
    int real_constant = 0, imag_constant = 0;
    const OrtValue *real = NULL, *imag = NULL;
    OrtStatus *status = api->KernelInfoGetConstantInput_tensor(info, 2, &real_constant, &real);
    if (!status) status = api->KernelInfoGetConstantInput_tensor(info, 3, &imag_constant, &imag);
    if (!status && real_constant && imag_constant) {
        int half_source;
        status = kernel_sizes(k, real, imag, &half_source);
        if (!status && k->vector_unit && !k->half && !half_source) { /* float32: read in place, no copy */
            status = api->GetTensorMutableData((OrtValue *)real, (void **)&k->in_place[0]);
            if (!status) status = api->GetTensorMutableData((OrtValue *)imag, (void **)&k->in_place[1]);
        } else if (!status) {
            status = pack_values(k, real, imag, &k->packed, &k->packed_bytes);
        }
    }
    if (status) {
        free(k->packed);
        free(k);
        return status;
    }
    *out = k;
    return NULL;
}

static OrtStatus *ORT_API_CALL compute(void *kernel, OrtKernelContext *context) {
    MixKernel *k = kernel;
    const OrtValue *x_real, *x_imag;
    OrtStatus *status = g_api->KernelContext_GetInput(context, 0, &x_real);
    if (!status) status = g_api->KernelContext_GetInput(context, 1, &x_imag);
    if (status) return status;
    const void *packed = k->packed;
    if (!packed && !k->in_place[0]) {
        const OrtValue *real, *imag;
        status = g_api->KernelContext_GetInput(context, 2, &real);
        if (!status) status = g_api->KernelContext_GetInput(context, 3, &imag);
        if (!status) status = pack_values(k, real, imag, &k->scratch, &k->scratch_bytes);
        if (status) return status;
        packed = k->scratch;
    }
    int64_t real_dims[3], imag_dims[3];
    status = shape_of(x_real, real_dims, "x_real", NULL);
    if (!status) status = shape_of(x_imag, imag_dims, "x_imag", NULL);
    if (status) return status;
    if (memcmp(real_dims, imag_dims, sizeof real_dims) != 0 || real_dims[0] != k->freqs || real_dims[2] != k->in_ch)
        return fail(OP_NAME ": inputs must be (F, B, I) with the kernel's F and I, real and imaginary alike");
    int64_t out_dims[3] = {k->freqs, real_dims[1], k->out_ch};
    OrtValue *y_real, *y_imag;
    void *xr, *xi, *yr, *yi;
    status = g_api->KernelContext_GetOutput(context, 0, out_dims, 3, &y_real);
    if (!status) status = g_api->KernelContext_GetOutput(context, 1, out_dims, 3, &y_imag);
    if (!status) status = g_api->GetTensorMutableData((OrtValue *)x_real, &xr);
    if (!status) status = g_api->GetTensorMutableData((OrtValue *)x_imag, &xi);
    if (!status) status = g_api->GetTensorMutableData(y_real, &yr);
    if (!status) status = g_api->GetTensorMutableData(y_imag, &yi);
    if (status) return status;
    if (k->vector_unit)
        mix_vector(k, packed, real_dims[1], xr, xi, yr, yi);
    else
        mix_portable(k, packed, real_dims[1], xr, xi, yr, yi);
    return NULL;
}

static void ORT_API_CALL destroy_kernel(void *kernel) {
    MixKernel *k = kernel;
    free(k->packed);
    free(k->scratch);
    free(k);
}

static const char *ORT_API_CALL op_name(const OrtCustomOp *op) { (void)op; return OP_NAME; }
static const char *ORT_API_CALL op_provider(const OrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static ONNXTensorElementDataType ORT_API_CALL float_type(const OrtCustomOp *op, size_t index) {
    (void)op; (void)index;
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
/* Kernel spectra: float32, or float16 (checked at kernel creation). */
static ONNXTensorElementDataType ORT_API_CALL input_type(const OrtCustomOp *op, size_t index) {
    (void)op;
    return index >= 2 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
static size_t ORT_API_CALL four(const OrtCustomOp *op) { (void)op; return 4; }
static size_t ORT_API_CALL two(const OrtCustomOp *op) { (void)op; return 2; }
static OrtCustomOpInputOutputCharacteristic ORT_API_CALL required(const OrtCustomOp *op, size_t index) {
    (void)op; (void)index;
    return INPUT_OUTPUT_REQUIRED;
}
static OrtMemType ORT_API_CALL cpu_memory(const OrtCustomOp *op, size_t index) {
    (void)op; (void)index;
    return OrtMemTypeDefault;
}
static int ORT_API_CALL from_version(const OrtCustomOp *op) { (void)op; return 1; }
static int ORT_API_CALL to_version(const OrtCustomOp *op) { (void)op; return INT32_MAX; }

#define MIX_OP(HALF)                                                                                               \
    {{.version = ORT_API_VERSION, .GetName = op_name, .GetExecutionProviderType = op_provider,                     \
      .GetInputType = input_type, .GetInputTypeCount = four, .GetOutputType = float_type,                          \
      .GetOutputTypeCount = two, .KernelDestroy = destroy_kernel, .GetInputCharacteristic = required,              \
      .GetOutputCharacteristic = required, .GetInputMemoryType = cpu_memory, .CreateKernelV2 = create_kernel,      \
      .KernelComputeV2 = compute, .GetStartVersion = from_version, .GetEndVersion = to_version}, HALF}

static MixOp half_op = MIX_OP(1), single_op = MIX_OP(0);
static OrtCustomOpDomain *domains[2]; /* onnxruntime keeps a pointer: they live as long as the library */

__attribute__((visibility("default"))) OrtStatus *ORT_API_CALL RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *base) {
    g_api = base->GetApi(ORT_API_VERSION);
    if (!g_api) /* an onnxruntime older than this header: report it through the first API version */
        return base->GetApi(1)->CreateStatus(ORT_FAIL, OP_NAME ": onnxruntime is older than the header it was built with");
    char precision[16] = "float16";
    int has_entry = 0;
    OrtStatus *status = g_api->HasSessionConfigEntry(options, PRECISION_KEY, &has_entry);
    if (!status && has_entry) {
        size_t size = sizeof precision;
        status = g_api->GetSessionConfigEntry(options, PRECISION_KEY, precision, &size);
    }
    if (status) return status;
    int half;
    if (strcmp(precision, "float16") == 0) half = 1;
    else if (strcmp(precision, "float32") == 0) half = 0;
    else return fail(PRECISION_KEY " must be float16 or float32");
    if (!domains[half]) {
        status = g_api->CreateCustomOpDomain(DOMAIN, &domains[half]);
        if (!status) status = g_api->CustomOpDomain_Add(domains[half], &(half ? &half_op : &single_op)->base);
        if (status) {
            domains[half] = NULL;
            return status;
        }
    }
    return g_api->AddCustomOpDomain(options, domains[half]);
}
