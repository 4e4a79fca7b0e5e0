"""Every tuned number of the read path, in one frozen Calibration, each with the reason for its value.

The numbers were calibrated together on scripts/bench_robustness.py (10,000 records, 18,400
queries): the decision thresholds were measured on agreements computed with these alignment
constants, on candidates retrieved and looked at with these retrieval and look settings. So
changing one group changes what the others mean; recalibrate on the benchmark (its --rescore
re-judges a saved run under other thresholds) rather than editing one number. Nothing reads a
module constant for these: a Calibration is passed in (``Matcher``, ``verify_geometry``,
``block_agreement``), so a benchmark or a test tries other values with ``dataclasses.replace``.

What is fixed at registration (the feature extractor's side and keypoint budget, the descriptors
indexed per record) is not here: changing it changes what the store holds, which is a new
fingerprint kind, not a recalibration.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds, calibrated for zero false matches on the benchmark's distractors."""

    # Meta's guidance for PDQ: a Hamming distance of at most 31 bits is a match.
    pdq_match: int = 31
    # Hits up to 45 bits are worth judging: a heavy re-encode or a thumbnail of a drawing.
    pdq_possible: int = 45
    # Meta's guidance: hashes of quality below 50 (flat, featureless images) are unreliable.
    pdq_min_quality: int = 50
    # A geometric match of 20 inliers is a match once its overlap agrees (see below).
    inliers_match: int = 20
    # Fewer than 10 inliers are chance alignments of unrelated images.
    inliers_possible: int = 10
    # A geometric match counts as a match only if the aligned images agree (index.alignment):
    # a share of 0.9 at inliers_match, falling linearly to 0.6 at 40 more inliers. Coincidences
    # of shapes and glyphs bring 20-40 inliers (an empty circle against part of a bowling ball:
    # 24 inliers, share 0.83); overlays lower a copy's share but not its inliers. Below
    # inliers_match (a small crop, a thumbnail) only a near-identical overlap will do, in the
    # same hues where it has colour (dense_hue_agreement: flags share designs, not colours).
    agreement_at_fewest_inliers: float = 0.9
    agreement_at_many_inliers: float = 0.6
    agreement_span_inliers: int = 40
    agreement_below_match: float = 0.95
    # With fewer than inliers_reviewed_anyway inliers a copy is also one picture within the
    # other: a crop lies inside the original, a screenshot or a collage holds the whole of it.
    # Shapes that line up by chance overlap only partly, each reaching beyond the other, and at
    # least this share of neither lies within the other (benchmark, 10,000 never-registered
    # queries: a pool ball's rim on a circle's, 10 inliers at agreement 0.96, 25 % of the
    # original and 12 % of the query; a flag's star on another's, 10 and 22 inliers at 0.96,
    # 42 % and 24 %). Of 400 copies confirmed with 10-59 inliers, all had a side at 0.6 or more
    # but four copies of flags that a mirror or a shift by a stripe aligns partly onto
    # themselves (0.28-0.39; one of them, overlaid with an emoji, found nothing else). A later
    # full run found a coincidence at 0.5: one star of a quarter of the EU flag on the big star
    # of a tile of Alaska's (32 inliers, agreement 0.90; the tile half covered, 18 % of the
    # query within it), while the 276 copies matched by keypoints with fewer than 60 inliers
    # in that run (collages aside, which hold the whole picture) all had a side at 0.97 or more.
    # And once a crop's sides stopped counting as edges that disagree (index.alignment.warp_onto),
    # a flag's red disc on half of a red disc at a tile's edge agreed at 1.0 (10 inliers, 0.78 of
    # the tile within the flag): hence 0.9. A match under a richer model than a similarity
    # (Ransac.richer_from_inliers) needs it at any count of inliers: a meme caption's letters,
    # bent by an affine map onto a stored word, agreed at 0.62 on 60 inliers (full run of
    # 2026-12-04), a quarter of the word's picture and a tenth of the meme.
    nested_share: float = 0.9
    # A confirmed geometric match whose overlap keeps the original's block levels (up to one
    # brightness, contrast or gamma map: index.alignment._level_agreement) in fewer than this
    # share of its blocks is a possible match only: one layout of outlined boxes drawn twice
    # with other labels on another soft background agrees on every box edge (tests: shares
    # 0.72-0.92 on 26-97 inliers) but keeps 0.55-0.63 of its levels, where copies under the
    # fitting model keep 0.93-1.
    agreement_levels: float = 0.8
    # So many inliers need no dense confirmation (benchmark: wrong records reach 123, a mirrored
    # Wesnoth sprite against its neighbour in the same set).
    inliers_alone: int = 300
    # Where the overlap is too calm for the dense check to judge (a misty wallpaper's crop), a
    # coincidence has little to align: shapes and glyphs that line up by chance are structure,
    # which the check would judge. So many inliers there are a copy's (benchmark: wrong records
    # on unjudgeable overlaps reach at most 34 inliers).
    inliers_unjudged: int = 60
    # Nor is every unconfirmed geometric match worth a person's review: with fewer than
    # inliers_reviewed_anyway inliers, an overlap that mostly disagrees is shapes lining up by
    # chance (a meme caption's letters on a stored word: 22-61 inliers, shares 0.11-0.5), and
    # below agreement_to_review it is no match. Benchmark run of 2026-12-01: 1,808 of the 2,354
    # never-registered queries that were possible matches fell below, and none of the copies
    # left as possible matches of their own record (an overlay hides part of a copy, not its
    # 100 and more inliers).
    agreement_to_review: float = 0.3
    inliers_reviewed_anyway: int = 40
    # A PDQ hit between possible and match (a thumbnail of a drawing, a heavy re-encode) is a
    # match when the whole suspect, scaled onto the original, agrees this much (benchmark: wrong
    # records within pdq_possible reach at most 0.74).
    pdq_agreement: float = 0.9
    # PDQ sees only where an image is dark and where it is light, so two simple layouts can
    # share a hash (a flag's coloured bands against a dark screen's frame: 18-26 bits apart).
    # A hit within pdq_match whose whole aligned image disagrees below this share stays a
    # possible match.
    pdq_match_agreement: float = 0.5
    # A crop placed without keypoints (index.alignment.locate_within, compared edge-tolerantly)
    # is a match when so much of it, with at least dense_min_blocks structured blocks, agrees
    # (more below dense_many_blocks), and so many of its coloured blocks are coloured alike in
    # both (hue cannot tell only where neither has colour). The best placement of a wrong record
    # is the best of thousands (benchmark probe, 19,485 wrong candidates of crops and
    # never-registered images, where hue did not tell: 0.88 with 32-47 blocks, 0.86 with 48-63,
    # 0.66 with 64 or more; in full runs flags in other colours reached 0.96-0.99: stripes on
    # stripes, a black-and-white cross on a Nordic one, bands on bands).
    dense_agreement: float = 0.9
    dense_agreement_few: float = 0.95
    dense_min_blocks: int = 32
    dense_many_blocks: int = 64
    dense_hue_agreement: float = 0.8
    # A placement without keypoints of a part (below Fill.whole_coverage of the original) made
    # only of axis-aligned flat bands (a flag's stripes and crosses) is a possible match at
    # most: every flag of that design holds it, so it proves nothing about where it came from
    # (benchmark, 10,305 never-registered queries: a
    # crop of the Danish flag, never registered, placed inside Piedmont's, whose cross is the
    # same; 6 crops of registered flags with only bands in them became possible matches, and
    # no other verdict changed). Bands: at most band_kinds kinds of row and of column (lines
    # within band_line_tolerance levels of each other on average) once the kinds rarer than
    # band_minor_share of the lines are set aside as the blends at a band's edge, and those
    # blends at most band_edges of the lines. The nearest picture that is not bands among the
    # benchmark's placed copies has 7 kinds of row (a gradient wallpaper with a swirl).
    band_kinds: int = 5
    band_line_tolerance: float = 6.0
    band_minor_share: float = 0.04
    band_edges: float = 0.1
    # Nor is a part made of a few flat colours that meet along a few straight edges (an arrow's
    # head where it leaves the shaft, the corner of a polygon): every drawing with such a corner
    # holds it (full benchmark run, 10,305 never-registered queries: a quarter of a diagonal
    # arrow placed on the corner of another arrow's head at agreement 0.99). Plain: at least
    # plain_colour_share of the pixels in plain_colours colours (32 levels a channel), and all
    # but plain_unexplained of the edge pixels within plain_line_tolerance pixels of at most
    # plain_lines straight lines. Of the 27 crops in that run that only the dense look matched,
    # the plainest took 4 colours and 5 lines or more, or spread over many colours (a gradient).
    plain_colours: int = 4
    plain_colour_share: float = 0.9
    plain_lines: int = 3
    plain_line_tolerance: float = 1.5
    plain_unexplained: float = 0.1
    # A suspect with PDQ quality below pdq_min_quality and fewer keypoints than this is too flat
    # for any method to match with precision (a plain gradient, a blank page): the answer says so.
    low_detail_keypoints: int = 100


@dataclass(frozen=True)
class Retrieval:
    """How candidates are voted for in the descriptor index and how many are verified."""

    # Query descriptors that vote (a spatially balanced prefix of them); search time grows with it.
    query_descriptors: int = 500
    # Each query descriptor votes for the records of its 4 nearest indexed descriptors...
    neighbours: int = 4
    # ...that lie within 70 of 256 bits (unrelated binary descriptors sit near 128 apart).
    max_distance: int = 70
    # A record needs 3 votes to be verified: one or two are descriptors that match anything.
    min_votes: int = 3
    # Verify the 4 most voted first...
    candidates_to_verify: int = 4
    # ...and down to the 8th only when none of them matched: a crop or a small screenshot shares
    # only part of the original's indexed descriptors and can rank below generic texture.
    max_candidates_to_verify: int = 8
    # The large look counts a record's votes only in the densest window of the query: windows
    # of 3 by 3 cells of an 8 by 8 grid (3/8 of the side, sliding by 1/8) ranked the right
    # record best among sides of 1/4 to 1/2 on 300 benchmark screenshots (index.search).
    window_grid: int = 8
    window_cells: int = 3
    # The large look verifies a candidate first in and around the densest window of its votes
    # (margin: a fraction of the query's side) and the whole query only from this many inliers
    # there: chance alignments of a wrong record mostly stop at RANSAC's minimum of 4 or 5, and a
    # threshold of 10 lost a screenshot whose picture spread beyond the window (11 inliers in all).
    window_margin: float = 1 / 8
    window_inliers_for_whole: int = 6


@dataclass(frozen=True)
class Looks:
    """The settings of the looks after the first (index.matching lists the looks themselves)."""

    # The small looks, for crops: a crop shows part of the original enlarged, so at the
    # processing side its details are finer than the original's, beyond ORB's pyramid. Seen
    # smaller they meet the original's scale: a crop keeping half the area near 450 px, one
    # keeping a quarter at 320. (Benchmark, crops of 300 registered images: adding the 320 px
    # look and judging each look's alignment raised 25 % crops from 88.7 to 90.1 % and 50 %
    # crops from 96.0 to 96.2 %.)
    small_side: int = 400
    smaller_side: int = 320
    small_query_descriptors: int = 300
    # Keypoints each small look describes and verifies with, and the mirrored look (the first
    # look's 1,500, mirrored): fewer than the first look's, since every never-registered query
    # pays for them. Replayed at 1,000 on the saved copies of the full run of 2026-12-04 that
    # reached these looks (453 and 257): every verdict and top record the same; never-registered
    # queries: the same verdicts on 150, 7 ms less CPU each at the median.
    small_keypoints: int = 1000
    mirrored_keypoints: int = 1000
    # The large look: page chrome around a screenshotted picture wins the strongest corners, so
    # the picture's own keypoints only show up in a larger budget, at twice the processing side.
    large_keypoints: int = 3000
    large_query_descriptors: int = 600
    # The mirrored look votes with fewer descriptors than the first look: a mirrored copy keeps
    # most of the original (a crop to 60-80 %), so its record wins by far (in a probe of 40
    # mirrored crops, 20 votes or more and ranked first each time), and every never-registered
    # query pays for this look. 200 of them: replayed on the 257 saved copies of the full run
    # of 2026-12-04 that reached this look, every verdict and top record as with 300 (with 5,
    # a tenth of them lost).
    mirrored_query_descriptors: int = 200
    # The dense look: the first candidates of the main and the small looks (benchmark: 58 of 71
    # flat-drawing crops missed by keypoints had their record in the top four of the main and
    # the first small look), for crops that keep at least a tenth of the original. Every
    # never-registered query pays for each (~6 ms a record). One of each: the 32 copies that the
    # dense look matched in the full run of 2026-12-04 (of 5,410) each had its record first in
    # a small look, and a record voted second by another look could push it out of the first
    # ones searched stretched (dense_stretched_candidates). Replayed against two of each: the
    # 1,350 crops and stretched crops (and saturation x2) matched 4 stretched crops more and
    # none fewer; 1,010 queries (640 never-registered) gave the same verdicts and evidence,
    # the dense look's median on the never-registered ones 36 -> 24 ms, theirs 226 -> 215 ms.
    dense_candidates: int = 1
    # The first records of that list are also searched stretched (index.alignment.locate_within;
    # ~10 ms a record): replayed benchmark misses of stretched crops, 19 of 57 matched so, 21
    # where every record was searched stretched at ~4 times the dense look's cost. Since one
    # record of each look is placed (at most three), all three: replayed, one stretched crop
    # more of 300 matched, the 1,050 other crops and stretched copies as before, and the dense
    # look's mean on 640 never-registered queries 26 -> 30 ms.
    dense_stretched_candidates: int = 3
    dense_min_coverage: float = 0.1
    # A placement found at half the preview's resolution is a pixel or two off; refining it can
    # only rescue one that already agrees this much (benchmark probe: copies that end up passing
    # start at 0.43 or more; 3,488 of 3,538 wrong candidates below 0.5 skip the ~3 ms refinement).
    dense_refine_from: float = 0.3
    # The agreement thresholds were calibrated on previews of this long side: every judgement is
    # made there first. A larger stored preview is judged again, finely, where that first
    # judgement fails and the suspect resolves it (index.matching.Preview).
    judged_side: int = 256
    # A placement that the coarse preview could judge is judged finely only from this share
    # (benchmark: each crop that the fine judgement made a match had 0.55 or more, or too few
    # structured blocks to judge; three in four wrong candidates of never-registered queries are
    # below 0.3, one in twenty above 0.5, and each fine judgement costs ~9 ms).
    dense_fine_from: float = 0.5


@dataclass(frozen=True)
class Alignment:
    """What "the aligned images agree" means (index.alignment); the agreement thresholds above
    were measured with these, so changing one means recalibrating them."""

    block: int = 8  # preview pixels per block side (a 256 px preview has 32 blocks across)
    smoothing_sigma: float = 1.5  # preview pixels; resampling, JPEG and noise differ per pixel
    structure_std: float = 6.0  # grey-level standard deviation that makes a block structured
    # In an edge-tolerant comparison a structured block agrees where the other image's block
    # correlates with it and is merely not flat, short of structure_std: a thin edge near a
    # block's border puts most of its contrast in one block or the next as the map moves by a
    # pixel (exact crops of flat drawings: disagreeing blocks at 3 against 9 grey levels,
    # correlated 0.99).
    not_flat_std: float = 2.0
    agreeing_correlation: float = 0.5  # blocks correlating above this agree
    min_judged_blocks: int = 16  # fewer cannot tell a copy from a coincidence (a tiny overlap)
    # The level test (index.alignment._level_agreement): blocks ranked by the query's level into
    # this many bins of equal count; a block agrees within this many grey levels of its bin's
    # median in the original.
    level_bins: int = 16
    level_tolerance: float = 12.0
    level_clip: int = 6  # grey levels from white or black within which a pixel may be clipped (JPEG's noise)
    # ECC refinement (Evangelidis & Psarakis 2008): converges within 30 iterations on a copy
    # misplaced by a pixel or two; more only wander on wrong records.
    ecc_iterations: int = 30
    ecc_epsilon: float = 1e-3
    ecc_smoothing: int = 3
    # A copy's map needs at most a block of refinement (median 1.7 preview pixels, 90 % under
    # 4.5), while on a wrong record ECC wanders off to align other content (median 75 pixels).
    max_refinement_blocks: float = 1.0
    chromatic: float = 10.0  # CIELAB chroma of a block that has a colour (a grey block has ~0)
    same_hue_degrees: float = 30.0  # hues this close are alike under saturation and gamma edits
    min_chromatic_blocks: int = 8  # fewer coloured blocks cannot tell colours apart
    # Between template sizes in locate_within; ECC absorbs what lies between.
    locate_scale_step: float = 1.08
    # A crop fitted into another format is stretched 10-30 % along one axis (issue #16): the
    # stretched search slides the query widened and narrowed by this factor (and its powers up
    # to stretched_aspect_steps), for placed_finer (half a step either way) and ECC to refine.
    # Replayed, the stretched crops of the benchmark that missed without it or that it matched
    # in a full run: 26 of 64 matched with one step as with two (1.16 and 1.35), while the
    # dense stage's median on 400 never-registered queries fell from 138 to 83 ms (65 without
    # the stretched search). Searching only near the upright search's best scale found 2 of 19
    # stretched crops fewer.
    stretched_aspect_step: float = 1.16
    stretched_aspect_steps: int = 1
    # The stretched search (twice the upright search's cost) only where the upright search
    # already placed the query this well: the 32 copies that the dense look matched in a replay
    # of the benchmark's crops and stretched crops were placed upright at 0.51 or more (0.59 and
    # 0.51 for the two most stretched). Of 697 stretched searches in 294 never-registered
    # queries, 40 % started below 0.4 and none of those reached the 0.6 that judging needs.
    stretched_from_correlation: float = 0.4
    min_template_side: int = 12  # half-preview pixels: smaller templates correlate with anything
    # A placement whose best correlation stays below this is not judged: the 32 crops that the
    # dense look matched in the benchmark's 5,410 copies were placed at 0.84 or more, and of
    # 1,070 placements in 250 never-registered originals none below 0.5 reached a block share
    # of 0.65 (a match needs 0.9). Below 0.6 lie 71 % of those placements, whose judging (block
    # agreement, ECC, the full-size pass) was a third of the dense look's cost.
    min_placement_correlation: float = 0.6


@dataclass(frozen=True)
class Ransac:
    """Geometric verification of a candidate (index.features.verify_geometry)."""

    ratio: float = 0.8  # Lowe's ratio test (Lowe 2004)
    # A candidate is first matched with this share of the query's descriptors (a spatially
    # balanced prefix), and only where they fit a transform, with the rest too. Benchmark probe
    # (400 copies of the hardest families, 120 never-registered queries): 88 % of the
    # never-registered queries' candidates stop at the prefix (verification 88 -> 48 ms a query,
    # with vote_and_verify no longer verifying again records too weak to count); of the copies'
    # right candidates with 10 or more inliers 2 stopped there, and no copy's verdict changed.
    probe_share: float = 0.5
    # ...where that prefix holds this many descriptors; a smaller query is matched whole (in the
    # full benchmark a mirrored crop of a flag, 96 keypoints, lost its 21 inliers in a prefix of 48).
    probe_min_descriptors: int = 200
    # The prefix is matched with this share of the candidate's descriptors (a prefix too, where
    # it holds probe_min_descriptors). Replayed on the 5,202 saved copies of the full run of
    # 2026-12-04 that reached a keypoint look: every verdict and top record the same at 0.5; at
    # 1/3, a quarter crop lost. Never-registered queries: the same verdicts on 100, 9 ms less
    # CPU each at the median (the whole sets are matched afresh where the prefixes fit).
    probe_reference_share: float = 0.5
    reprojection_pixels: float = 4.0  # inlier tolerance, in processing pixels of the reference
    # RANSAC's iterations (OpenCV's default) and confidence (above its default 0.99): the
    # thresholds above were calibrated with these inlier counts.
    iterations: int = 2000
    confidence: float = 0.995
    # In processing pixels a real copy shows the original between a 5x magnified crop and a
    # 10x reduced thumbnail inside a screenshot; chance alignments of unrelated images mostly
    # collapse the query onto a sliver of the reference (scale 0.02-0.2, measured).
    min_scale: float = 0.2
    max_scale: float = 10.0
    # A copy stretched to another aspect ratio or photographed at an angle aligns only roughly
    # under a similarity: its keypoints find it, its dense check fails. From this many inliers
    # the same matches are fitted again by an affine map, then a homography, and judged under
    # each (index.judging). From as few as inliers_possible: below inliers_reviewed_anyway a
    # match must also lie within the other picture (Thresholds.nested_share), which is what
    # stopped the chance alignments that richer models line up. Benchmark (10,000 records, same
    # store and queries, 20 -> 10): crops of 25 and 50 % stretched to another aspect 75.3 ->
    # 79.3 and 86.0 -> 87.3 %, perspective 95.3 -> 96.7 %, no verdict of another family
    # changed, and no false match among 2,265 never-registered queries.
    richer_from_inliers: int = 10
    # A similarity whose overlap agrees this much fits (a copy's share is near 1 where nothing
    # covers it); below, a richer model is judged too, and taken when it is a match where the
    # similarity was not, or agrees clearly more (by better_fit_share; or has that share more
    # inliers where a share was not judged).
    similarity_fits: float = 0.85
    better_fit_share: float = 0.1
    # Limits of a richer fit: singular values of its linear part within this ratio (an aspect
    # change of 30 % is 1.3/0.7 = 1.86 at worst, with shear), and a homography's perspective
    # divisor across the query's corners within this ratio (corners moved 8 % of the side: 1.3).
    max_anisotropy: float = 2.0
    max_perspective: float = 1.5


@dataclass(frozen=True)
class ColourEdit:
    """The global colour edits one picture is taken to be a copy of another under (index.smooth):
    a gamma, a saturation factor (a blend with grey), then per channel a gain and an offset
    (sRGB, 0..1) whose gains differ by at most max_tint and offsets by max_offset_tint (a white
    balance): no edit of these turns a hue."""

    # The defaults are the mild edits of a barely edited copy of a smooth picture (saturation,
    # brightness and contrast within 60 %, a faint white balance); Recolour widens them.
    gammas: tuple[float, ...] = (1.0,)
    min_saturation: float = 1 / 1.6
    max_saturation: float = 1.6
    max_gain: float = 1.6
    max_tint: float = 1.15
    max_offset: float = 0.1
    max_offset_tint: float = 0.05
    # How strongly the fit pulls the channels towards one gain and one offset: as much as the
    # colour variance (~0.01) of a channel that barely varies, little against one that does.
    tint_weight: float = 0.01
    identity_weight: float = 1e-4  # towards gain 1, offset 0: decides only what the data leave open
    # Fitted on at most so many blocks, spread evenly (a 256 px preview has up to 768; None: all):
    # the wide edit's 315 gammas and saturations cost ~5 ms so instead of ~25.
    fitted_blocks: int | None = None


@dataclass(frozen=True)
class Fill:
    """The whole-picture colour comparison of smooth pictures (index.smooth)."""

    # Smooth records whose colour layouts (a grid of this side) lie nearest the suspect's are
    # compared whole; a copy's layout is nearest its record's among hundreds of smooth ones.
    layout_side: int = 6
    candidates: int = 3
    block: int = 8  # preview pixels per block side, as the dense check's
    max_aspect_change: float = 0.03  # log ratio: a whole copy keeps its shape; a crop does not
    edit: ColourEdit = field(default_factory=ColourEdit)  # the mild edits of a barely edited copy
    tolerance: float = 4.0  # CIELAB units between mapped block means
    edge_allowance: float = 0.25  # of a block's own colour spread
    share: float = 0.98  # of the blocks within the tolerance
    # A geometric match whose region covers this much of the original makes the suspect a whole
    # copy, which the colour comparison may veto (index.matching.colour_veto_look).
    whole_coverage: float = 0.9
    min_spread: float = 5.0  # CIELAB; a near-uniform picture identifies nothing


@dataclass(frozen=True)
class Recolour:
    """Where a geometric match is judged on structure, the colours of its flat parts must agree
    too (index.smooth.recoloured_share): keypoints and the dense check see only lightness and
    edges, so a flat illustration with one shape recoloured, or a flag with one band in another
    colour, lines up with its original everywhere (benchmark hard negatives: 42-61 inliers at
    agreements of 0.72-1.0)."""

    # Any global edit the colour families make: brightness +50 %, contrast -50 %, gamma 0.6,
    # saturation x2, grayscale (saturation 0), none of which turns a hue.
    edit: ColourEdit = field(
        default_factory=lambda: ColourEdit(
            gammas=(0.5, 0.6, 0.75, 1.0, 1.33, 1.67, 2.0),
            min_saturation=0.0,
            max_saturation=2.2,
            max_gain=2.5,
            max_offset=0.6,
            fitted_blocks=128,
        )
    )
    block: int = 8  # preview pixels per block side, as the dense check's
    # A block is flat where its colours spread less than this (sRGB, 0..1) in both pictures:
    # the inside of a shape or a band, not an edge, which resampling and alignment move.
    flat_spread: float = 0.03
    tolerance: float = 10.0  # CIELAB units between mapped block means: a visible difference
    # An overlay (an emoji: a flat sticker up to 1/4 of the side, about 6 % of the area) also
    # makes flat blocks disagree; a recolour is told from one only where more of the overlap
    # differs than any overlay covers.
    share: float = 0.1


@dataclass(frozen=True)
class Calibration:
    """Every tuned number of the read path (see the module docstring); pass one in, never patch."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    retrieval: Retrieval = field(default_factory=Retrieval)
    looks: Looks = field(default_factory=Looks)
    alignment: Alignment = field(default_factory=Alignment)
    ransac: Ransac = field(default_factory=Ransac)
    fill: Fill = field(default_factory=Fill)
    recolour: Recolour = field(default_factory=Recolour)
