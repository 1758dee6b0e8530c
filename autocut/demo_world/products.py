"""The demo world's product catalogue and script templates (English and Chinese).

Everything here is generated from fixed tables and a seed: categories with their shapes,
brands, selling points and moods; products drawn from them; and the template sentences a
reference ad speaks per narrative role. Product names are compositional on purpose
("<brand> <colour> <noun> <model>"): the colour and the shape noun are visible in the
frames, so relevance can be learned from text for products never seen in training,
while the brand badge separates a product from its look-alikes.

Over 500 lines because two thirds of it are the category tables (shapes, brands, selling points,
hook and usage lines per category, in both languages); the code is the last ~220 lines.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

from autocut.errors import ConfigError

__all__ = [
    "BRAND_MARKS",
    "CATEGORIES",
    "COLOURS",
    "ROLES",
    "SPLITS",
    "Brand",
    "Category",
    "Colour",
    "Product",
    "SellingPoint",
    "build_catalogue",
    "count_words",
    "lookalike",
    "sentence",
    "stable_seed",
]

# Narrative roles of an ad's clips, in their usual order (hook first, call to action last).
ROLES = ("hook", "showcase", "feature", "usage", "proof", "cta")
SPLITS = ("train", "val", "test")
# Brand badge marks drawn on the product body (see drawing.draw_mark).
BRAND_MARKS = ("circle", "triangle", "diamond", "star", "ring", "bars", "cross", "square")


@dataclass(frozen=True)
class Colour:
    key: str
    en: str
    zh: str
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class SellingPoint:
    key: str
    en: str  # a noun phrase: templates put it after "It comes with", "Enjoy", ...
    zh: str
    icon: str  # glyph drawn in feature clips (drawing.draw_icon)


@dataclass(frozen=True)
class Brand:
    en: str
    zh: str
    mark: str  # one of BRAND_MARKS
    badge_rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Category:
    key: str
    en: str
    zh: str
    mood: str  # BGM mood (music.MOODS)
    # shape -> (noun en, noun zh); shapes are drawn by drawing.draw_product.
    shapes: dict[str, tuple[str, str]]
    brands: tuple[Brand, ...]
    selling_points: tuple[SellingPoint, ...]
    pains: tuple[tuple[str, str], ...]  # hook lines
    usage: tuple[tuple[str, str], ...]  # usage lines
    price_usd: tuple[float, float]


COLOURS: tuple[Colour, ...] = (
    Colour("crimson", "Crimson", "绯红", (196, 30, 58)),
    Colour("coral", "Coral", "珊瑚橙", (255, 111, 80)),
    Colour("amber", "Amber", "琥珀", (255, 176, 0)),
    Colour("lemon", "Lemon", "柠檬黄", (240, 226, 60)),
    Colour("lime", "Lime", "青柠", (140, 210, 50)),
    Colour("emerald", "Emerald", "翡翠绿", (20, 150, 90)),
    Colour("teal", "Teal", "青绿", (0, 140, 150)),
    Colour("sky", "Sky", "天蓝", (90, 180, 240)),
    Colour("cobalt", "Cobalt", "钴蓝", (30, 70, 190)),
    Colour("violet", "Violet", "紫罗兰", (130, 70, 200)),
    Colour("rose", "Rose", "玫瑰粉", (240, 120, 170)),
    Colour("graphite", "Graphite", "石墨黑", (55, 58, 64)),
    Colour("ivory", "Ivory", "象牙白", (238, 232, 214)),
    Colour("mocha", "Mocha", "摩卡棕", (120, 80, 55)),
)
_COLOUR_BY_KEY = {c.key: c for c in COLOURS}


def _sp(key: str, en: str, zh: str, icon: str) -> SellingPoint:
    return SellingPoint(key, en, zh, icon)


def _b(en: str, zh: str, mark: str, rgb: tuple[int, int, int]) -> Brand:
    return Brand(en, zh, mark, rgb)


CATEGORIES: tuple[Category, ...] = (
    Category(
        "kitchen",
        "Kitchen",
        "厨房好物",
        "warm",
        {
            "bottle": ("Blender Bottle", "榨汁杯"),
            "mug": ("Thermo Mug", "保温杯"),
            "kettle": ("Electric Kettle", "电热水壶"),
            "jar": ("Storage Jar", "密封罐"),
        },
        (
            _b("FreshCo", "鲜享", "circle", (230, 80, 40)),
            _b("ChefMate", "厨伴", "triangle", (40, 90, 160)),
            _b("Hearth", "暖灶", "diamond", (150, 60, 30)),
            _b("Zesto", "泽斯", "bars", (60, 140, 60)),
        ),
        (
            _sp("fast", "thirty-second results", "三十秒快速完成", "clock"),
            _sp("wash", "a fully washable design", "全身可水洗", "drop"),
            _sp("heat", "twelve hours of heat retention", "十二小时长效保温", "flame"),
            _sp("seal", "a leak-proof lid", "防漏密封盖", "lock"),
            _sp("safe", "food-grade materials", "食品级材质", "leaf"),
            _sp("touch", "one-touch operation", "一键操作", "check"),
            _sp("usb", "USB charging", "USB充电", "battery"),
            _sp("light", "a feather-light body", "轻巧机身", "feather"),
        ),
        (
            ("Tired of messy mornings in the kitchen?", "早上做饭总是手忙脚乱？"),
            ("Is your breakfast always a rush?", "早餐总是来不及吃？"),
            ("Still washing five tools for one meal?", "做一顿饭要洗五样工具？"),
        ),
        (
            ("Fill it, press once, and pour.", "装满，一按，直接倒出。"),
            ("Toss it in your bag and go.", "往包里一放就能出门。"),
        ),
        (12.0, 60.0),
    ),
    Category(
        "beauty",
        "Beauty",
        "美妆护肤",
        "calm",
        {
            "tube": ("Face Cleanser", "洁面乳"),
            "pump": ("Repair Serum", "修护精华"),
            "jar": ("Night Cream", "晚霜"),
            "bottle": ("Hydrating Toner", "补水爽肤水"),
        },
        (
            _b("Lumina", "柔光", "ring", (200, 160, 90)),
            _b("PureLeaf", "纯叶", "circle", (70, 150, 90)),
            _b("Velvet", "丝绒", "diamond", (150, 40, 90)),
            _b("Aurora", "极光", "star", (90, 110, 200)),
        ),
        (
            _sp("hydra", "all-day hydration", "全天持久补水", "drop"),
            _sp("gentle", "a gentle formula for sensitive skin", "敏感肌也能用的温和配方", "feather"),
            _sp("plant", "plant-based ingredients", "植物萃取成分", "leaf"),
            _sp("glow", "a visible glow in seven days", "七天看得见的光泽", "sun"),
            _sp("spf", "built-in sun protection", "自带防晒", "shield"),
            _sp("quick", "a fast-absorbing texture", "秒吸收质地", "bolt"),
            _sp("scent", "a light natural scent", "淡雅自然香气", "heart"),
            _sp("derm", "dermatologist-tested safety", "皮肤科测试安全", "check"),
        ),
        (
            ("Does your skin feel dry by noon?", "一到中午皮肤就干？"),
            ("Tired of makeup that never sits right?", "上妆总是卡粉？"),
            ("Want skin that glows without filters?", "想要不靠滤镜的好气色？"),
        ),
        (
            ("Two drops, a gentle pat, and you're set.", "两滴，轻拍，就搞定了。"),
            ("Use it morning and night after cleansing.", "早晚洁面后使用。"),
        ),
        (9.0, 45.0),
    ),
    Category(
        "electronics",
        "Electronics",
        "数码电子",
        "energetic",
        {
            "slab": ("Smartphone", "智能手机"),
            "headphones": ("Wireless Headphones", "无线耳机"),
            "round": ("Smart Speaker", "智能音箱"),
            "box": ("Power Bank", "充电宝"),
        },
        (
            _b("Voltix", "伏特", "bars", (40, 40, 40)),
            _b("Nexa", "奈克萨", "triangle", (20, 120, 200)),
            _b("Pulse", "脉冲", "circle", (220, 50, 80)),
            _b("Orbit", "轨道", "ring", (90, 90, 160)),
        ),
        (
            _sp("battery", "a two-day battery", "两天超长续航", "battery"),
            _sp("fastcharge", "fast charging in twenty minutes", "二十分钟快充", "bolt"),
            _sp("sound", "studio-quality sound", "录音棚级音质", "wave"),
            _sp("water", "water resistance", "防水设计", "drop"),
            _sp("secure", "fingerprint security", "指纹加密", "lock"),
            _sp("slim", "an ultra-slim build", "超薄机身", "feather"),
            _sp("smart", "a smart voice assistant", "智能语音助手", "star"),
            _sp("tough", "a drop-proof shell", "防摔外壳", "shield"),
        ),
        (
            ("Is your battery dead by lunch again?", "午饭前手机又没电了？"),
            ("Tired of tangled cables everywhere?", "到处都是缠在一起的数据线？"),
            ("Still missing calls in noisy places?", "嘈杂的地方总是漏接电话？"),
        ),
        (
            ("Pair it once, and it connects every time.", "配对一次，以后自动连接。"),
            ("Tap, swipe, and you're in control.", "轻点滑动，一切尽在掌控。"),
        ),
        (25.0, 300.0),
    ),
    Category(
        "fitness",
        "Fitness",
        "运动健身",
        "energetic",
        {
            "dumbbell": ("Adjustable Dumbbell", "可调哑铃"),
            "bottle": ("Sports Bottle", "运动水壶"),
            "shoe": ("Running Shoe", "跑鞋"),
            "round": ("Massage Ball", "按摩球"),
        },
        (
            _b("Stride", "步越", "triangle", (230, 90, 20)),
            _b("IronPeak", "铁峰", "bars", (60, 60, 70)),
            _b("Flexa", "弹力", "circle", (20, 160, 140)),
            _b("Kinetic", "动能", "cross", (200, 30, 30)),
        ),
        (
            _sp("grip", "a non-slip grip", "防滑握感", "check"),
            _sp("adjust", "quick weight adjustment", "快速调节重量", "clock"),
            _sp("breath", "breathable mesh", "透气网面", "wave"),
            _sp("cushion", "springy cushioning", "回弹缓震", "feather"),
            _sp("cold", "ice-cold drinks for a full day", "全天冰爽保冷", "snow"),
            _sp("durable", "heavy-duty materials", "耐用加厚材质", "shield"),
            _sp("recover", "faster muscle recovery", "加速肌肉恢复", "heart"),
            _sp("compact", "a compact home-gym size", "小户型也放得下", "bolt"),
        ),
        (
            ("No time for the gym this week?", "这周又没时间去健身房？"),
            ("Do your legs ache after every run?", "每次跑完步腿都酸？"),
            ("Still skipping workouts at home?", "在家锻炼总是坚持不下来？"),
        ),
        (
            ("Twist, lock, and start your set.", "一转一锁，马上开练。"),
            ("Ten minutes a day is all it takes.", "每天十分钟就够了。"),
        ),
        (15.0, 120.0),
    ),
    Category(
        "home",
        "Home",
        "家居清洁",
        "calm",
        {
            "pump": ("Foaming Hand Soap", "泡沫洗手液"),
            "bottle": ("Spray Cleaner", "清洁喷雾"),
            "round": ("Robot Vacuum", "扫地机器人"),
            "box": ("Air Purifier", "空气净化器"),
        },
        (
            _b("Tidy", "整洁", "square", (40, 150, 200)),
            _b("Breeze", "清风", "ring", (90, 180, 170)),
            _b("Nest", "巢居", "diamond", (120, 100, 70)),
            _b("Sparkle", "闪亮", "star", (230, 180, 30)),
        ),
        (
            _sp("germ", "99 percent germ removal", "百分之九十九除菌", "shield"),
            _sp("quiet", "whisper-quiet running", "静音运行", "wave"),
            _sp("eco", "an eco-friendly refill", "环保补充装", "recycle"),
            _sp("auto", "automatic scheduling", "自动定时", "clock"),
            _sp("fresh", "a fresh citrus scent", "清新柑橘香", "leaf"),
            _sp("filter", "a three-layer filter", "三层过滤", "check"),
            _sp("pet", "pet-safe ingredients", "宠物安全配方", "heart"),
            _sp("power", "powerful suction", "强劲吸力", "bolt"),
        ),
        (
            ("Dust again, one day after cleaning?", "刚打扫完，第二天又是灰？"),
            ("Is cleaning eating your whole weekend?", "周末全花在打扫上了？"),
            ("Worried about germs on every surface?", "担心家里到处是细菌？"),
        ),
        (
            ("Press start and walk away.", "按下开始，然后就不用管了。"),
            ("Spray, wait ten seconds, and wipe.", "喷一喷，等十秒，一擦就净。"),
        ),
        (8.0, 250.0),
    ),
    Category(
        "pet",
        "Pets",
        "宠物用品",
        "playful",
        {
            "bag": ("Grain-Free Cat Food", "无谷猫粮"),
            "jar": ("Dog Treats", "狗狗零食"),
            "round": ("Chew Ball", "磨牙球"),
            "box": ("Smart Feeder", "智能喂食器"),
        },
        (
            _b("Paws", "爪爪", "circle", (230, 120, 40)),
            _b("Whisker", "胡须", "triangle", (110, 80, 160)),
            _b("Furrow", "毛团", "star", (200, 70, 110)),
            _b("Barkley", "巴克利", "square", (70, 120, 60)),
        ),
        (
            _sp("protein", "real meat protein", "真肉高蛋白", "heart"),
            _sp("teeth", "cleaner teeth", "清洁牙齿", "check"),
            _sp("grainfree", "a grain-free recipe", "无谷配方", "leaf"),
            _sp("timer", "timed portions", "定时定量", "clock"),
            _sp("chew", "a bite-proof material", "耐咬材质", "shield"),
            _sp("coat", "a shinier coat", "毛发更亮泽", "sun"),
            _sp("app", "app control from anywhere", "手机远程控制", "wave"),
            _sp("easy", "easy-clean parts", "拆洗方便", "drop"),
        ),
        (
            ("Is your cat a picky eater?", "家里猫咪太挑食？"),
            ("Does your dog chew up every toy?", "狗狗把玩具全咬坏了？"),
            ("Worried about feeding while you're away?", "出门在外担心没人喂？"),
        ),
        (
            ("Scoop, serve, and watch them run over.", "舀一勺，倒进碗，看它飞奔过来。"),
            ("Set it once and the feeder does the rest.", "设置一次，剩下交给喂食器。"),
        ),
        (6.0, 90.0),
    ),
    Category(
        "kids",
        "Kids",
        "母婴玩具",
        "playful",
        {
            "round": ("Bouncy Ball", "弹力球"),
            "box": ("Building Blocks", "积木"),
            "bottle": ("Baby Bottle", "奶瓶"),
            "bag": ("School Backpack", "儿童书包"),
        },
        (
            _b("Tiny", "小不点", "star", (240, 150, 40)),
            _b("Giggle", "咯咯", "circle", (230, 80, 150)),
            _b("Sprout", "萌芽", "triangle", (80, 170, 80)),
            _b("Bloop", "布噜", "ring", (60, 130, 220)),
        ),
        (
            _sp("nontoxic", "non-toxic materials", "无毒材质", "leaf"),
            _sp("soft", "soft rounded edges", "柔软圆角", "feather"),
            _sp("learn", "learning through play", "边玩边学", "star"),
            _sp("anticolic", "an anti-colic valve", "防胀气阀门", "check"),
            _sp("light", "an extra-light weight", "超轻重量", "feather"),
            _sp("bright", "bright, safe colours", "鲜艳安全色彩", "sun"),
            _sp("washable", "machine-washable fabric", "可机洗面料", "drop"),
            _sp("sturdy", "a drop-tested build", "经过跌落测试", "shield"),
        ),
        (
            ("Are the kids bored again already?", "孩子又喊无聊了？"),
            ("Looking for a toy that is actually safe?", "想找一款真正安全的玩具？"),
            ("Is bottle time a daily battle?", "每天喂奶都像打仗？"),
        ),
        (
            ("Hand it over and watch them play.", "递给孩子，看他们玩得开心。"),
            ("Snap it together in seconds.", "几秒钟就能拼好。"),
        ),
        (8.0, 70.0),
    ),
    Category(
        "fashion",
        "Fashion",
        "服饰鞋包",
        "playful",
        {
            "bag": ("Tote Bag", "托特包"),
            "shoe": ("Canvas Sneaker", "帆布鞋"),
            "round": ("Classic Watch", "经典腕表"),
            "box": ("Leather Wallet", "真皮钱包"),
        },
        (
            _b("Mode", "摩德", "diamond", (30, 30, 30)),
            _b("Atelier", "工坊", "ring", (160, 120, 70)),
            _b("Street", "街头", "bars", (220, 60, 60)),
            _b("Linen", "亚麻", "square", (150, 150, 130)),
        ),
        (
            _sp("leather", "genuine leather", "头层真皮", "check"),
            _sp("roomy", "room for everything", "超大容量", "star"),
            _sp("comfort", "all-day comfort", "全天舒适", "feather"),
            _sp("classic", "a timeless design", "经典百搭设计", "heart"),
            _sp("waterproof", "a water-repellent finish", "防泼水面料", "drop"),
            _sp("handmade", "hand-stitched details", "手工缝制细节", "leaf"),
            _sp("rfid", "RFID protection", "防盗刷保护", "lock"),
            _sp("sizes", "sizes for everyone", "尺码齐全", "sun"),
        ),
        (
            ("Nothing to wear again this morning?", "早上又不知道穿什么？"),
            ("Is your bag too small for your day?", "包包总是装不下？"),
            ("Want one piece that goes with everything?", "想要一件百搭单品？"),
        ),
        (
            ("Throw it on and head out the door.", "随手一搭就能出门。"),
            ("From the office to dinner without a change.", "从办公室到晚餐不用换装。"),
        ),
        (15.0, 180.0),
    ),
    Category(
        "beverage",
        "Drinks",
        "饮品",
        "warm",
        {
            "can": ("Sparkling Water", "气泡水"),
            "bottle": ("Cold Brew Coffee", "冷萃咖啡"),
            "mug": ("Milk Tea", "奶茶"),
            "jar": ("Raw Honey", "原蜜"),
        },
        (
            _b("Fizz", "气泡", "circle", (40, 170, 220)),
            _b("Brewhouse", "酿坊", "square", (100, 60, 40)),
            _b("Meadow", "牧场", "triangle", (120, 170, 60)),
            _b("Nectar", "花蜜", "star", (230, 170, 30)),
        ),
        (
            _sp("zero", "zero sugar", "零糖", "check"),
            _sp("natural", "natural fruit flavour", "天然果味", "leaf"),
            _sp("energy", "a smooth energy boost", "温和提神", "bolt"),
            _sp("cold", "best served ice-cold", "冰镇更好喝", "snow"),
            _sp("local", "locally sourced ingredients", "本地优质原料", "heart"),
            _sp("lowcal", "only ten calories", "仅十卡路里", "feather"),
            _sp("recycle", "a recyclable can", "可回收包装", "recycle"),
            _sp("rich", "a rich, full taste", "浓郁醇厚口感", "star"),
        ),
        (
            ("Need a pick-me-up this afternoon?", "下午犯困想提神？"),
            ("Tired of sugary drinks?", "受够了高糖饮料？"),
            ("Looking for something new to sip?", "想换个新口味？"),
        ),
        (
            ("Chill it, crack it open, and enjoy.", "冰一下，打开，尽情享用。"),
            ("Pour over ice and sip slowly.", "倒在冰块上，慢慢品尝。"),
        ),
        (3.0, 25.0),
    ),
    Category(
        "outdoor",
        "Outdoor",
        "户外露营",
        "energetic",
        {
            "bottle": ("Insulated Flask", "保温壶"),
            "bag": ("Hiking Backpack", "登山包"),
            "can": ("Camping Lantern", "露营灯"),
            "box": ("Solar Charger", "太阳能充电板"),
        },
        (
            _b("Summit", "峰顶", "triangle", (40, 110, 70)),
            _b("TrailX", "越野", "cross", (200, 100, 30)),
            _b("Ember", "余烬", "diamond", (180, 50, 30)),
            _b("Nomad", "游牧", "bars", (90, 90, 60)),
        ),
        (
            _sp("light", "an ultralight frame", "超轻框架", "feather"),
            _sp("weather", "all-weather protection", "全天候防护", "shield"),
            _sp("solar", "solar charging", "太阳能充电", "sun"),
            _sp("bright", "four hundred lumens of light", "四百流明亮度", "bolt"),
            _sp("warm", "hot drinks for a whole day", "全天热饮", "flame"),
            _sp("pack", "a packable design", "可折叠收纳", "check"),
            _sp("water", "a waterproof shell", "防水外壳", "drop"),
            _sp("long", "a week of battery life", "一周续航", "battery"),
        ),
        (
            ("Planning a weekend away from the city?", "周末想逃离城市？"),
            ("Is your gear too heavy for the trail?", "装备太重走不动？"),
            ("Ever been caught in the dark at camp?", "在营地遇到过天黑没灯？"),
        ),
        (
            ("Clip it on, and hit the trail.", "往包上一挂，出发上路。"),
            ("Set it up in under a minute.", "一分钟内搭好。"),
        ),
        (18.0, 150.0),
    ),
)
_CATEGORY_BY_KEY = {c.key: c for c in CATEGORIES}


@dataclass
class Product:
    """One product of the world; `to_*` helpers feed the catalog and the manifest."""

    product_id: str
    category: str
    brand: Brand
    shape: str
    noun_en: str
    noun_zh: str
    colour: Colour
    model: str  # short model code, e.g. "X2"
    selling_points: list[SellingPoint]
    price_usd: float
    rating: float
    reviews_k: int
    split: str = "train"
    image_path: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def name_en(self) -> str:
        return f"{self.brand.en} {self.colour.en} {self.noun_en} {self.model}"

    @property
    def name_zh(self) -> str:
        return f"{self.brand.zh}{self.colour.zh}{self.noun_zh}{self.model}"

    @property
    def price_cny(self) -> int:
        # Round "psychological" yuan prices (…9), as shops price them.
        return max(9, int(round(self.price_usd * 7.2 / 10.0)) * 10 - 1)

    def price_text(self, lang: str) -> str:
        return f"${self.price_usd:.2f}" if lang == "en" else f"¥{self.price_cny}"

    def description(self, lang: str = "en") -> str:
        cat = _CATEGORY_BY_KEY[self.category]
        if lang == "zh":
            return (
                f"{self.name_zh}，{self.brand.zh}出品的{cat.zh}，"
                + "、".join(sp.zh for sp in self.selling_points)
                + "。"
            )
        return (
            f"The {self.name_en} is a {cat.en.lower()} product by {self.brand.en} with "
            + ", ".join(sp.en for sp in self.selling_points[:-1])
            + f" and {self.selling_points[-1].en}."
        )


def stable_seed(*parts: object) -> int:
    """A seed derived from values, the same in every process (Python's hash() is salted per run)."""
    h = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big")


def _model_code(rng: random.Random) -> str:
    return rng.choice("AEGKMQRSTVXZ") + str(rng.randint(1, 9))


def build_catalogue(
    n_products: int,
    *,
    seed: int,
    n_selling_points: int = 3,
    categories: int | None = None,
    split_fractions: tuple[float, float, float] = (0.75, 0.125, 0.125),
) -> list[Product]:
    """`n_products` products spread evenly over the categories, with a seeded split by product.

    Splits are stratified by category so every split holds every category; (brand, shape,
    colour) is unique within a category so no two products look identical.
    """
    cats = CATEGORIES[:categories] if categories else CATEGORIES
    if n_products < len(cats):
        cats = cats[: max(1, n_products)]
    if n_selling_points < 1 or n_selling_points > 8:
        raise ConfigError(f"n_selling_points must be in 1..8, got {n_selling_points}")
    per_cat = [n_products // len(cats) + (1 if i < n_products % len(cats) else 0) for i in range(len(cats))]
    products: list[Product] = []
    for cat, n in zip(cats, per_cat):
        rng = random.Random(stable_seed("catalogue", seed, cat.key))
        # Round-robin over shuffled (brand, shape) pairs, so brands and shapes are spread evenly;
        # products sharing a shape get different colours (look-alikes differ at least in colour).
        pairs = [(b, s) for b in range(len(cat.brands)) for s in cat.shapes]
        rng.shuffle(pairs)
        max_n = len(cat.shapes) * len(COLOURS)
        if n > max_n:
            raise ConfigError(f"category {cat.key} can hold at most {max_n} distinct products, asked {n}")
        used_colours: dict[str, set[int]] = {s: set() for s in cat.shapes}
        chosen: list[tuple[int, str, int]] = []
        k = 0
        while len(chosen) < n:
            b, s = pairs[k % len(pairs)]
            k += 1
            free = [c for c in range(len(COLOURS)) if c not in used_colours[s]]
            if not free:
                continue
            c = rng.choice(free)
            used_colours[s].add(c)
            chosen.append((b, s, c))
        cat_products = []
        for b, s, c in chosen:
            sps = rng.sample(list(cat.selling_points), n_selling_points)
            lo, hi = cat.price_usd
            price = round(rng.uniform(lo, hi)) - 0.01
            cat_products.append(
                Product(
                    product_id="",
                    category=cat.key,
                    brand=cat.brands[b],
                    shape=s,
                    noun_en=cat.shapes[s][0],
                    noun_zh=cat.shapes[s][1],
                    colour=COLOURS[c],
                    model=_model_code(rng),
                    selling_points=sps,
                    price_usd=max(price, 1.99),
                    rating=round(rng.uniform(4.2, 4.9), 1),
                    reviews_k=rng.randint(2, 48),
                )
            )
        rng.shuffle(cat_products)
        products.extend(cat_products)
    # Split by product: interleave the (shuffled) categories round-robin, then cut test / val / train
    # off the front, so every split spreads over the categories even in a tiny world.
    by_cat: dict[str, list[Product]] = {}
    for p in products:
        by_cat.setdefault(p.category, []).append(p)
    interleaved = [lst[i] for i in range(max(map(len, by_cat.values()))) for lst in by_cat.values() if i < len(lst)]
    n = len(interleaved)
    n_test = max(1, round(n * split_fractions[2])) if n >= 3 else 0
    n_val = max(1, round(n * split_fractions[1])) if n >= 3 else 0
    for rank, p in enumerate(interleaved):
        p.split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    for i, p in enumerate(products):
        p.product_id = f"p{i + 1:04d}"
    return products


def lookalike(product: Product, *, seed: int) -> Product:
    """A look-alike rival (same category and shape, a neighbouring colour, another brand) for distractors.

    Not a catalogue product: it only appears in distractor clips, as the hard negative a
    vision-only similarity baseline confuses with the real product.
    """
    rng = random.Random(stable_seed("lookalike", seed, product.product_id))
    cat = _CATEGORY_BY_KEY[product.category]
    brand = rng.choice([b for b in cat.brands if b.en != product.brand.en])
    i = COLOURS.index(product.colour)
    colour = COLOURS[(i + rng.choice((-1, 1))) % len(COLOURS)]
    return Product(
        product_id=f"{product.product_id}-rival",
        category=product.category,
        brand=brand,
        shape=product.shape,
        noun_en=product.noun_en,
        noun_zh=product.noun_zh,
        colour=colour,
        model=_model_code(rng),
        selling_points=list(product.selling_points),
        price_usd=product.price_usd,
        rating=product.rating,
        reviews_k=product.reviews_k,
        split=product.split,
    )


# --------------------------------------------------------------------------- script templates
# Per role: (en, zh) pairs. Slots: {name} {brand} {noun} {colour} {sp} {price} {rating} {reviews}.
_TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "hook": (
        ("Stop scrolling, you need to see this.", "先别划走，这个你一定要看！"),
        ("Here is a little secret from {brand}.", "告诉你一个{brand}的小秘密。"),
    ),
    "showcase": (
        ("Meet the {brand} {noun}.", "这就是{brand}{noun}。"),
        ("This is the new {name}.", "全新{name}来了。"),
        ("Say hello to the {colour} {noun} from {brand}.", "{brand}{colour}{noun}，颜值超高。"),
    ),
    "feature": (
        ("It comes with {sp}.", "它还有{sp}。"),
        ("Enjoy {sp}, every single day.", "{sp}，每天都好用。"),
        ("The best part? {Sp}.", "最惊喜的是{sp}。"),
        ("{Sp} makes all the difference.", "{sp}，真的不一样。"),
    ),
    "usage": (("Using it is as easy as it looks.", "用起来就是这么简单。"),),
    "proof": (
        ("Rated {rating} stars by {reviews} thousand buyers.", "{reviews}千位买家打出{rating}分好评。"),
        ("Over {reviews} thousand happy customers and counting.", "已经有{reviews}千多位顾客回购。"),
        ("Reviewers call it a must-have.", "买过的人都说是必备好物。"),
    ),
    "cta": (
        ("Grab yours today for just {price}.", "现在下单只要{price}！"),
        ("Tap the link and get it for {price}.", "点击链接，{price}带回家。"),
        ("Order now, only {price} this week.", "本周下单，仅需{price}。"),
    ),
}


def sentence(role: str, product: Product, lang: str, rng: random.Random, sp: SellingPoint | None = None) -> str:
    """One script line for a clip of `role`, filled with the product's facts."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if lang not in ("en", "zh"):
        raise ConfigError(f"unknown language {lang!r}; expected en or zh")
    cat = _CATEGORY_BY_KEY[product.category]
    options = list(_TEMPLATES[role])
    if role == "hook":
        options += list(cat.pains) * 2  # category pains are the usual hook
    elif role == "usage":
        options += list(cat.usage) * 2
    en, zh = rng.choice(options)
    tpl = en if lang == "en" else zh
    sp_text = ""
    if role == "feature":
        if sp is None:
            raise ConfigError("a feature sentence needs its selling point")
        sp_text = sp.en if lang == "en" else sp.zh
    values = {
        "name": product.name_en if lang == "en" else product.name_zh,
        "brand": product.brand.en if lang == "en" else product.brand.zh,
        "noun": product.noun_en if lang == "en" else product.noun_zh,
        "colour": product.colour.en if lang == "en" else product.colour.zh,
        "sp": sp_text,
        "Sp": sp_text[:1].upper() + sp_text[1:],
        "price": product.price_text(lang),
        "rating": f"{product.rating:.1f}",
        "reviews": str(product.reviews_k),
    }
    return tpl.format(**values)


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def count_words(text: str) -> int:
    """Words as the WCD metric counts them (docs/method.md, "Metrics"): one per CJK character, else
    whitespace-separated tokens with a Latin letter or digit."""
    n_cjk = len(_CJK.findall(text))
    rest = _CJK.sub(" ", text)
    n_latin = sum(1 for tok in rest.split() if re.search(r"[A-Za-z0-9]", tok))
    return n_cjk + n_latin
