// Spatial resampling of NCHW tensors.

extension Tensor {
    /// Nearest-neighbour ×2 upsampling, as F.interpolate(scale_factor=2, mode="nearest").
    public func upsampleNearest2x() -> Tensor {
        precondition(rank == 4, "upsample wants NCHW, got \(shape)")
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let out = data.withPointer { p in
            makeArray(planes * 4 * h * w) { o in
                for c in 0..<planes {
                    for y in 0..<(2 * h) {
                        let src = p + c * h * w + (y / 2) * w
                        let dst = o + c * 4 * h * w + y * 2 * w
                        for x in 0..<(2 * w) { dst[x] = src[x / 2] }
                    }
                }
            }
        }
        let inShape = shape
        return .result(shape: [shape[0], shape[1], 2 * h, 2 * w], data: out, inputs: [self]) { g in
            let dx = g.data.withPointer { gp in
                makeArray(planes * h * w) { o in
                    for c in 0..<planes {
                        for y in 0..<h {
                            for x in 0..<w {
                                let base = gp + c * 4 * h * w + 2 * y * 2 * w + 2 * x
                                o[c * h * w + y * w + x] = base[0] + base[1] + base[2 * w] + base[2 * w + 1]
                            }
                        }
                    }
                }
            }
            return [Tensor(shape: inShape, data: dx)]
        }
    }

    /// Zero padding of the last two dimensions (F.pad with (left, right, top, bottom)).
    public func padded(left: Int = 0, right: Int = 0, top: Int = 0, bottom: Int = 0) -> Tensor {
        precondition(rank == 4, "pad wants NCHW, got \(shape)")
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let (oh, ow) = (h + top + bottom, w + left + right)
        var out = [Float](repeating: 0, count: planes * oh * ow)
        data.withPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for c in 0..<planes {
                    for y in 0..<h {
                        (o.baseAddress! + (c * oh + y + top) * ow + left).update(from: p + (c * h + y) * w, count: w)
                    }
                }
            }
        }
        let inShape = shape
        return .result(shape: [shape[0], shape[1], oh, ow], data: out, inputs: [self]) { g in
            let dx = g.data.withPointer { gp in
                makeArray(planes * h * w) { o in
                    for c in 0..<planes {
                        for y in 0..<h {
                            (o + (c * h + y) * w).update(from: gp + (c * oh + y + top) * ow + left, count: w)
                        }
                    }
                }
            }
            return [Tensor(shape: inShape, data: dx)]
        }
    }

    /// Bilinear resize, as F.interpolate(mode="bilinear", align_corners=False, antialias=False).
    public func resizeBilinear(height outH: Int, width outW: Int) -> Tensor {
        precondition(rank == 4, "resize wants NCHW, got \(shape)")
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let ys = bilinearTaps(input: h, output: outH)
        let xs = bilinearTaps(input: w, output: outW)
        let out = data.withPointer { p in
            makeArray(planes * outH * outW) { o in
                for c in 0..<planes {
                    let src = p + c * h * w
                    let dst = o + c * outH * outW
                    for oy in 0..<outH {
                        let (y0, y1, wy) = ys[oy]
                        for ox in 0..<outW {
                            let (x0, x1, wx) = xs[ox]
                            let top = src[y0 * w + x0] * (1 - wx) + src[y0 * w + x1] * wx
                            let bottom = src[y1 * w + x0] * (1 - wx) + src[y1 * w + x1] * wx
                            dst[oy * outW + ox] = top * (1 - wy) + bottom * wy
                        }
                    }
                }
            }
        }
        let inShape = shape
        return .result(shape: [shape[0], shape[1], outH, outW], data: out, inputs: [self]) { g in
            var dx = [Float](repeating: 0, count: planes * h * w)
            g.data.withPointer { gp in
                dx.withUnsafeMutableBufferPointer { d in
                    for c in 0..<planes {
                        let src = gp + c * outH * outW
                        let dst = d.baseAddress! + c * h * w
                        for oy in 0..<outH {
                            let (y0, y1, wy) = ys[oy]
                            for ox in 0..<outW {
                                let (x0, x1, wx) = xs[ox]
                                let v = src[oy * outW + ox]
                                dst[y0 * w + x0] += v * (1 - wy) * (1 - wx)
                                dst[y0 * w + x1] += v * (1 - wy) * wx
                                dst[y1 * w + x0] += v * wy * (1 - wx)
                                dst[y1 * w + x1] += v * wy * wx
                            }
                        }
                    }
                }
            }
            return [Tensor(shape: inShape, data: dx)]
        }
    }
}

/// For each output coordinate: the two source indices and the weight of the second
/// (half-pixel centres, clamped at the borders, as PyTorch does).
func bilinearTaps(input: Int, output: Int) -> [(Int, Int, Float)] {
    let scale = Float(input) / Float(output)
    return (0..<output).map { o in
        let source = max(0, (Float(o) + 0.5) * scale - 0.5)
        let i0 = min(Int(source), input - 1)
        let i1 = min(i0 + 1, input - 1)
        return (i0, i1, source - Float(i0))
    }
}
